package relay

import (
	"bufio"
	"context"
	cryptorand "crypto/rand"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/pion/srtp/v3"
)

// dial connects to the peer and runs the handshake. An unanswered dial
// gives up after LinkTimeout.
func (l *link) dial(ctx context.Context) (*session, error) {
	l.r.mu.Lock()
	addr := l.addr
	l.r.mu.Unlock()
	l.stats.dials.Add(1)
	var from netip.AddrPort // any local address
	if ip := l.r.cfg.ListenAddr.Addr(); !ip.IsUnspecified() {
		from = netip.AddrPortFrom(ip, 0)
	}
	dctx, cancel := context.WithTimeout(ctx, l.r.cfg.LinkTimeout)
	raw, err := l.r.cfg.Net.DialTCP(dctx, from, addr)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("relay: dial %s at %v: %w", l.peer, addr, err)
	}
	c := tls.Client(raw, l.r.id.TLSConfig(alpn))
	s, _, err := l.r.handshake(ctx, c, l, addr)
	if err != nil {
		raw.Close()
		return nil, err
	}
	return s, nil
}

// accept serves links dialled by peers until ctx ends (nil) or accepting
// fails (the error).
func (r *Relay) accept(ctx context.Context, ln net.Listener) error {
	for {
		raw, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil // Serve closed the listener
			}
			return fmt.Errorf("relay: accept: %w", err)
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			c := tls.Server(raw, r.id.TLSConfig(alpn))
			s, lctx, err := r.handshake(ctx, c, nil, netip.AddrPort{})
			if err != nil {
				raw.Close()
				r.log.Debug("relay link refused", "remote", raw.RemoteAddr(), "err", err)
				return
			}
			_ = s.l.run(lctx, s) // logs its end; the dialler reconnects
		}()
	}
}

// handshake runs TLS (which fails without the cluster key), exchanges
// hellos and derives the SRTP keys of both directions. l is nil on the
// accepting side, which learns the peer from its hello and gets the link's
// context back.
func (r *Relay) handshake(ctx context.Context, c *tls.Conn, l *link, peerAddr netip.AddrPort) (*session, context.Context, error) {
	dialing := l != nil
	_ = c.SetDeadline(time.Now().Add(r.cfg.LinkTimeout))
	if err := c.HandshakeContext(ctx); err != nil {
		r.handshakeFailures.Add(1)
		return nil, nil, fmt.Errorf("relay: tls handshake: %w", err)
	}
	nonce := make([]byte, nonceLen)
	_, _ = cryptorand.Read(nonce)
	me := hello{Version: protocolVersion, Node: r.cfg.NodeName, Nonce: nonce, UDPPort: r.Addr().Port()}
	myHello := controlFrame(KindHello, "", "", appendHello(nil, me))
	br := bufio.NewReaderSize(c, 4096)
	if dialing { // the dialler speaks first
		if err := writeControl(c, myHello); err != nil {
			return nil, nil, err
		}
	}
	f, err := readControl(br, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("relay: read hello: %w", err)
	}
	if f.Kind != KindHello {
		return nil, nil, fmt.Errorf("relay: first frame is kind %d, not hello", f.Kind)
	}
	peer, err := decodeHello(f.Payload)
	if err != nil {
		return nil, nil, err
	}
	if peer.Node == r.cfg.NodeName {
		return nil, nil, fmt.Errorf("relay: peer claims this node's name %q", peer.Node)
	}
	var lctx context.Context
	dn, an := me.Nonce, peer.Nonce // the dialler's nonce first
	if dialing {
		if peer.Node != l.peer {
			return nil, nil, fmt.Errorf("relay: dialled %s but %s answered", l.peer, peer.Node)
		}
	} else {
		if err := writeControl(c, myHello); err != nil {
			return nil, nil, err
		}
		if l, lctx, err = r.acceptedLink(peer.Node); err != nil {
			return nil, nil, err
		}
		rip, err := netip.ParseAddrPort(c.RemoteAddr().String())
		if err != nil {
			return nil, nil, fmt.Errorf("relay: peer address: %w", err)
		}
		peerAddr = netip.AddrPortFrom(rip.Addr(), peer.UDPPort)
		dn, an = peer.Nonce, me.Nonce
	}
	_ = c.SetDeadline(time.Time{})

	st := c.ConnectionState()
	exp, err := st.ExportKeyingMaterial(labelExporter, nil, exporterLen)
	if err != nil {
		return nil, nil, fmt.Errorf("relay: tls exporter: %w", err)
	}
	sk, ss, err := srtpKeys(r.cfg.ClusterKey, exp, dn, an, r.cfg.NodeName, peer.Node)
	if err != nil {
		return nil, nil, err
	}
	rk, rs, err := srtpKeys(r.cfg.ClusterKey, exp, dn, an, peer.Node, r.cfg.NodeName)
	if err != nil {
		return nil, nil, err
	}
	enc, err := srtp.CreateContext(sk, ss, srtp.ProtectionProfileAeadAes128Gcm)
	if err != nil {
		return nil, nil, fmt.Errorf("relay: srtp: %w", err)
	}
	dec, err := srtp.CreateContext(rk, rs, srtp.ProtectionProfileAeadAes128Gcm, srtp.SRTPReplayProtection(replayWindow))
	if err != nil {
		return nil, nil, fmt.Errorf("relay: srtp: %w", err)
	}
	return &session{
		l:       l,
		conn:    c,
		br:      br,
		udpAP:   netip.AddrPortFrom(peerAddr.Addr().Unmap(), peerAddr.Port()),
		enc:     enc,
		dec:     dec,
		plain:   make([]byte, 0, datagramBuf),
		tx:      newSlots(txSlots, datagramBuf),
		txLen:   make([]int, txSlots),
		txKick:  make(chan struct{}, 1),
		decBuf:  make([]byte, 0, datagramBuf),
		nack:    make([]byte, 0, 2*maxNACKGap),
		out:     make(chan []byte, r.cfg.QueueLen),
		ctlKick: make(chan struct{}, 1),
		done:    make(chan struct{}),
	}, lctx, nil
}
