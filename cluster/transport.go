package cluster

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-sfu/shoal/internal/lograte"
)

// Node-to-node streams (Raft and the cluster RPC) share one TCP port. Each
// is TLS 1.3 with a certificate derived from the cluster key, checked on
// both ends: a process without the key can neither connect nor listen in.
// After the handshake the dialer writes one byte naming the protocol.
const (
	protoRaft byte = 'R'
	protoRPC  byte = 'C'
)

// mux listens on the node-to-node TCP port and hands each authenticated
// connection to Raft or to the RPC server.
type mux struct {
	ln      net.Listener
	tls     *tls.Config
	local   netip.Addr // advertised address, for FaultNet
	bind    netip.Addr // source address of outgoing connections, if valid
	faults  *FaultNet
	timeout time.Duration
	serve   func(net.Conn) // serves one RPC connection until it closes
	logger  *slog.Logger
	// acceptLog limits the lines of failed accepts (one per 10 ms at
	// most otherwise), which a flood of connections can cause (EMFILE).
	acceptLog *lograte.Limiter

	raftCh chan net.Conn
	done   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
}

func (m *mux) start() {
	m.raftCh = make(chan net.Conn)
	m.done = make(chan struct{})
	m.conns = map[net.Conn]struct{}{}
	m.acceptLog = lograte.New(lograte.DefaultBurst, lograte.DefaultInterval)
	m.wg.Add(1)
	go m.acceptLoop()
}

func (m *mux) acceptLoop() {
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			m.acceptLog.Log(context.Background(), m.logger, slog.LevelWarn, "cluster: accept", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		remote := addrOf(c.RemoteAddr().String())
		if m.faults.Blocked(m.local, remote) {
			c.Close()
			continue
		}
		c = m.faults.track(m.local, remote, c)
		if !m.add(c) {
			c.Close()
			return
		}
		m.wg.Add(1)
		go m.handle(c)
	}
}

// add tracks c so that close can cut it; false once closed.
func (m *mux) add(c net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.done:
		return false
	default:
	}
	m.conns[c] = struct{}{}
	return true
}

func (m *mux) remove(c net.Conn) {
	m.mu.Lock()
	delete(m.conns, c)
	m.mu.Unlock()
}

func (m *mux) handle(raw net.Conn) {
	defer m.wg.Done()
	c := tls.Server(raw, m.tls)
	c.SetDeadline(time.Now().Add(m.timeout))
	var b [1]byte
	if err := c.Handshake(); err != nil {
		m.logger.Debug("cluster: node-to-node handshake failed", "remote", raw.RemoteAddr(), "err", err)
		m.remove(raw)
		raw.Close()
		return
	}
	if _, err := io.ReadFull(c, b[:]); err != nil {
		m.remove(raw)
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	switch b[0] {
	case protoRaft:
		// Raft owns the connection from here; it stays tracked so that
		// close cuts it.
		select {
		case m.raftCh <- c:
		case <-m.done:
			c.Close()
		}
	case protoRPC:
		m.serve(c)
		m.remove(raw)
		c.Close()
	default:
		m.remove(raw)
		c.Close()
	}
}

// dial opens an authenticated stream of the given protocol to addr.
func (m *mux) dial(ctx context.Context, addr string, proto byte) (net.Conn, error) {
	remote := addrOf(addr)
	if m.faults.Blocked(m.local, remote) {
		return nil, errBlocked
	}
	d := net.Dialer{Timeout: m.timeout}
	if m.bind.IsValid() && !m.bind.IsUnspecified() {
		d.LocalAddr = &net.TCPAddr{IP: m.bind.AsSlice()}
	}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	raw = m.faults.track(m.local, remote, raw)
	c := tls.Client(raw, m.tls)
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	} else {
		c.SetDeadline(time.Now().Add(m.timeout))
	}
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	if _, err := c.Write([]byte{proto}); err != nil {
		raw.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// close stops accepting, cuts every accepted connection and waits for the
// handlers to end.
func (m *mux) close() {
	m.once.Do(func() {
		m.mu.Lock()
		close(m.done)
		conns := m.conns
		m.conns = nil
		m.mu.Unlock()
		m.ln.Close()
		for c := range conns {
			c.Close()
		}
		m.wg.Wait()
	})
}

// streamLayer is Raft's view of the mux.
type streamLayer struct {
	m      *mux
	addr   net.Addr
	closed chan struct{}
	once   sync.Once
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.m.raftCh:
		return c, nil
	case <-s.closed:
		return nil, net.ErrClosed
	case <-s.m.done:
		return nil, net.ErrClosed
	}
}

func (s *streamLayer) Close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}

func (s *streamLayer) Addr() net.Addr { return s.addr }

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.m.dial(ctx, string(address), protoRaft)
}

// RPC frames: a 4-byte big-endian length, then that many bytes of JSON.
const maxFrame = 8 << 20

func writeFrame(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > maxFrame {
		return fmt.Errorf("cluster: frame of %d bytes exceeds %d", len(b), maxFrame)
	}
	buf := make([]byte, 4, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	_, err = w.Write(append(buf, b...))
	return err
}

func readFrame(r io.Reader) ([]byte, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(h[:])
	if n > maxFrame {
		return nil, fmt.Errorf("cluster: frame of %d bytes exceeds %d", n, maxFrame)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

// rpcRequest is one node-to-node request.
type rpcRequest struct {
	Op     string      `json:"op"`
	Cmd    *command    `json:"cmd,omitempty"`
	Info   *NodeInfo   `json:"info,omitempty"`
	Target string      `json:"target,omitempty"`
	Load   *loadReport `json:"load,omitempty"`
	// Servers is the new Raft configuration of a recover request.
	Servers []recoverServer `json:"servers,omitempty"`
}

const (
	rpcApply    = "apply"    // forward a command to the leader
	rpcRegister = "register" // RegisterClusterNode, to the contact then the leader
	rpcPurge    = "purge"    // PurgeClusterNode, to the leader
	// A temporary node that stops asks the leader to erase it (Info names
	// the run, so that a late request cannot erase a newer run).
	rpcDeregister = "deregister"
	rpcLoad       = "load" // a node's load, to every node
	// InitCluster after a breakdown, from the initiating node to each node:
	rpcRecoverCheck = "recover_check" // this node's status (also: is Target in its configuration?)
	rpcRecover      = "recover"       // adopt this Raft configuration
)

// rpcResponse answers an rpcRequest.
type rpcResponse struct {
	Code  string       `json:"code,omitempty"`
	Error string       `json:"error,omitempty"`
	Claim *claimResult `json:"claim,omitempty"`
	Nodes []string     `json:"nodes,omitempty"`
	Owner *NodeInfo    `json:"owner,omitempty"`
	// Status answers a recover check.
	Status *recoverStatus `json:"status,omitempty"`
}

// decodeRequest parses and checks one request frame.
func decodeRequest(b []byte) (rpcRequest, error) {
	var r rpcRequest
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("cluster: bad request: %w", err)
	}
	switch r.Op {
	case rpcApply:
		if r.Cmd == nil {
			return r, errors.New("cluster: bad request: apply without command")
		}
		cb, _ := json.Marshal(r.Cmd)
		if _, err := decodeCommand(cb); err != nil {
			return r, err
		}
	case rpcRegister:
		if r.Info == nil {
			return r, errors.New("cluster: bad request: register without node info")
		}
		if _, err := ParseNodeName(r.Info.Name); err != nil {
			return r, err
		}
		if _, err := netip.ParseAddrPort(r.Info.Addr); err != nil {
			return r, fmt.Errorf("cluster: bad request: node address %q: %w", r.Info.Addr, err)
		}
	case rpcPurge:
		if _, err := ParseNodeName(r.Target); err != nil {
			return r, err
		}
	case rpcDeregister:
		if r.Info == nil || r.Info.Boot == "" {
			return r, errors.New("cluster: bad request: deregister without the run's node info")
		}
		if _, err := ParseNodeName(r.Info.Name); err != nil {
			return r, err
		}
	case rpcLoad:
		if r.Load == nil || r.Load.Node == "" {
			return r, errors.New("cluster: bad request: load without report")
		}
		if r.Load.Total < 0 {
			return r, errors.New("cluster: bad request: negative load")
		}
	case rpcRecoverCheck:
	case rpcRecover:
		if err := checkRecoverServers(r.Servers); err != nil {
			return r, err
		}
	default:
		return r, fmt.Errorf("cluster: bad request: unknown op %q", r.Op)
	}
	return r, nil
}

// rpcClient keeps a few idle connections per peer.
type rpcClient struct {
	m    *mux
	mu   sync.Mutex
	idle map[string][]*rpcConn
	shut bool
}

const maxIdlePerPeer = 4

type rpcConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *rpcClient) get(ctx context.Context, addr string) (*rpcConn, error) {
	c.mu.Lock()
	if c.shut {
		c.mu.Unlock()
		return nil, net.ErrClosed
	}
	if l := c.idle[addr]; len(l) > 0 {
		conn := l[len(l)-1]
		c.idle[addr] = l[:len(l)-1]
		c.mu.Unlock()
		return conn, nil
	}
	c.mu.Unlock()
	conn, err := c.m.dial(ctx, addr, protoRPC)
	if err != nil {
		return nil, err
	}
	return &rpcConn{Conn: conn, r: bufio.NewReader(conn)}, nil
}

func (c *rpcClient) put(addr string, conn *rpcConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shut || len(c.idle[addr]) >= maxIdlePerPeer {
		conn.Close()
		return
	}
	c.idle[addr] = append(c.idle[addr], conn)
}

// call sends req to addr and waits for the answer. An error from the peer
// comes back as the matching sentinel when there is one.
func (c *rpcClient) call(ctx context.Context, addr string, req rpcRequest) (rpcResponse, error) {
	var resp rpcResponse
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.m.timeout)
		defer cancel()
	}
	for attempt := 0; ; attempt++ {
		conn, err := c.get(ctx, addr)
		if err != nil {
			return resp, fmt.Errorf("%w: %s: %w", ErrUnreachable, addr, err)
		}
		dl, _ := ctx.Deadline()
		conn.SetDeadline(dl)
		err = writeFrame(conn, req)
		var b []byte
		if err == nil {
			b, err = readFrame(conn.r)
		}
		if err != nil {
			conn.Close()
			// A pooled connection may have been closed by the peer; retry
			// once on a fresh one.
			if attempt == 0 && ctx.Err() == nil {
				continue
			}
			return resp, fmt.Errorf("%w: %s: %w", ErrUnreachable, addr, err)
		}
		conn.SetDeadline(time.Time{})
		c.put(addr, conn)
		if err := json.Unmarshal(b, &resp); err != nil {
			return resp, fmt.Errorf("cluster: bad answer from %s: %w", addr, err)
		}
		if resp.Error != "" {
			if e, ok := errByCode[resp.Code]; ok {
				return resp, fmt.Errorf("%w (from %s: %s)", e, addr, resp.Error)
			}
			return resp, fmt.Errorf("cluster: %s: %s", addr, resp.Error)
		}
		return resp, nil
	}
}

func (c *rpcClient) close() {
	c.mu.Lock()
	c.shut = true
	idle := c.idle
	c.idle = nil
	c.mu.Unlock()
	for _, l := range idle {
		for _, conn := range l {
			conn.Close()
		}
	}
}
