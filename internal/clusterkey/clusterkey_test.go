package clusterkey

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

var key = bytes.Repeat([]byte{7}, 32)

// handshake connects the two configurations over loopback TCP: the server
// writes one byte after its handshake, the client reads it (in TLS 1.3 a
// client learns that the server refused its certificate only on that
// read). It returns the client's and the server's errors.
func handshake(client, server *tls.Config) (error, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err, err
	}
	defer ln.Close()
	errs := make(chan error, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			errs <- err
			return
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(5 * time.Second))
		s := tls.Server(raw, server)
		if err := s.Handshake(); err != nil {
			errs <- err
			return
		}
		_, err = s.Write([]byte{1})
		errs <- err
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return err, <-errs
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	c := tls.Client(raw, client)
	cerr := c.Handshake()
	if cerr == nil {
		_, cerr = c.Read(make([]byte, 1))
	}
	raw.Close()
	return cerr, <-errs
}

func TestSameKeyConnects(t *testing.T) {
	x, err := Derive(key, "relay")
	if err != nil {
		t.Fatal(err)
	}
	y, err := Derive(append([]byte(nil), key...), "relay")
	if err != nil {
		t.Fatal(err)
	}
	if cerr, serr := handshake(x.TLSConfig("p"), y.TLSConfig("p")); cerr != nil || serr != nil {
		t.Fatalf("same key: client %v, server %v", cerr, serr)
	}
}

func TestOtherKeyOrPurposeRefused(t *testing.T) {
	good, _ := Derive(key, "relay")
	other, _ := Derive(bytes.Repeat([]byte{8}, 32), "relay")
	purpose, _ := Derive(key, "cluster")
	for name, bad := range map[string]*Identity{"other key": other, "other purpose": purpose} {
		cerr, serr := handshake(bad.TLSConfig(), good.TLSConfig())
		if cerr == nil || serr == nil {
			t.Errorf("%s as client: client %v, server %v; want both refused", name, cerr, serr)
		}
		if !mentionsPeerKey(cerr) && !mentionsPeerKey(serr) {
			t.Errorf("%s: neither %v nor %v says the peer lacks the key", name, cerr, serr)
		}
		cerr, serr = handshake(good.TLSConfig(), bad.TLSConfig())
		if cerr == nil || serr == nil {
			t.Errorf("%s as server: client %v, server %v; want both refused", name, cerr, serr)
		}
	}
	// A client with no certificate at all.
	cerr, serr := handshake(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}, good.TLSConfig())
	if cerr == nil && serr == nil {
		t.Error("a client without a certificate was accepted")
	}
}

func TestDeriveRejectsBadInput(t *testing.T) {
	if _, err := Derive([]byte("short"), "relay"); err == nil {
		t.Error("a 5-byte key was accepted")
	}
	if _, err := Derive(key, ""); err == nil {
		t.Error("an empty purpose was accepted")
	}
}

func mentionsPeerKey(err error) bool {
	return err != nil && (errors.Is(err, ErrPeerKey) || strings.Contains(err.Error(), ErrPeerKey.Error()))
}
