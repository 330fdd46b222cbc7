package shoal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/shoal-sfu/shoal/affinity"
)

// A node blocks itself on a local fault: while one of the checks below
// fails, its mode is block_new_connection with a mode_reason naming the
// fault, and when every check passes again it goes back to the mode it had.
// The rules, and how they meet the operator's SetMode, are in
// docs/cluster.md ("Blocked on a local fault").

// Defaults of SelfBlockConfig.
const (
	DefaultSelfBlockInterval = 5 * time.Second
	DefaultRelayDownFor      = 30 * time.Second
)

// dataDirProbe is the file written, synced and removed in DataDir to check
// that the node can write there.
const dataDirProbe = ".shoal-write-probe"

// probeHang is how long a write of the probe may take before the data
// directory counts as failing (a disk or a network mount that hangs).
const probeHang = 10 * time.Second

// SelfBlockConfig sets how a Node watches for local faults.
type SelfBlockConfig struct {
	// Off turns the checks off: the node never blocks itself.
	Off bool
	// Interval is the time between checks; 0 means
	// DefaultSelfBlockInterval.
	Interval time.Duration
	// RelayDownFor is how long a relay link must stay down to count as
	// failing; 0 means DefaultRelayDownFor.
	RelayDownFor time.Duration
}

func (c SelfBlockConfig) withDefaults() (SelfBlockConfig, error) {
	if c.Interval < 0 || c.RelayDownFor < 0 {
		return c, fmt.Errorf("shoal: SelfBlock: Interval %v and RelayDownFor %v must not be negative", c.Interval, c.RelayDownFor)
	}
	if c.Interval == 0 {
		c.Interval = DefaultSelfBlockInterval
	}
	if c.RelayDownFor == 0 {
		c.RelayDownFor = DefaultRelayDownFor
	}
	return c, nil
}

// faultMonitor checks the node's health every Interval and sets its mode.
// Only its goroutine uses its fields.
type faultMonitor struct {
	n   *Node
	cfg SelfBlockConfig

	// While blocked, the node's mode is block_new_connection with reason,
	// set by the monitor over prevMode and prevReason (the operator's).
	blocked    bool
	reason     string
	prevMode   affinity.Mode
	prevReason string
	// yielded: the mode was changed by someone else while the node was
	// blocked for a fault; the monitor leaves it until the faults clear.
	yielded bool

	probe chan error           // the data directory probe in flight, if any
	seen  map[string]time.Time // when gossip last showed each other node connected
}

// watchFaults starts the fault monitor in the node's group; it ends with
// the node's life (the first thing Close ends).
func (n *Node) watchFaults() {
	if n.cfg.SelfBlock.Off {
		return
	}
	cfg, _ := n.cfg.SelfBlock.withDefaults() // checked by New
	m := &faultMonitor{n: n, cfg: cfg}
	n.mu.Lock() // Close waits for the group only after it has this lock
	defer n.mu.Unlock()
	if n.state.Closed() {
		return
	}
	n.group.Go(func() error {
		m.run(n.life)
		return nil
	})
}

func (m *faultMonitor) run(ctx context.Context) {
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		m.apply(m.check(ctx))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// check returns the faults found now, each a short phrase; none means
// healthy.
func (m *faultMonitor) check(ctx context.Context) []string {
	var faults []string
	if f := m.checkRelay(); f != "" {
		faults = append(faults, f)
	}
	if err := m.checkDataDir(ctx); err != nil {
		faults = append(faults, "data directory not writable: "+err.Error())
	}
	if err := m.n.sfu.MediaSocketErr(); err != nil {
		faults = append(faults, err.Error())
	}
	return faults
}

// checkRelay: the node's relay is failing when its links to more than half
// of the other nodes that are alive have been down for RelayDownFor or
// longer. A node whose own relay fails loses its links to all of them; the
// others each lose one link of several and stay as they are. (Of two
// nodes, both block: neither can tell whose side failed.) A node is alive
// if gossip shows it connected now or did within RelayDownFor: a node that
// died is not this node's fault once gossip has seen it gone for as long
// as a link must be down, and a node that gossip misses for a moment (a
// loaded machine) still counts. Out of the majority the node admits no
// connection anyway, and its links are down for that reason: no fault.
func (m *faultMonitor) checkRelay() string {
	n := m.n
	if n.relay == nil {
		return ""
	}
	down := n.relay.LinksDown()
	v := n.member.Snapshot()
	now := time.Now()
	seen := make(map[string]time.Time, len(v.Nodes))
	var alive int
	var failing []string
	for _, nd := range v.Nodes {
		if nd.Name == n.cfg.NodeName {
			continue
		}
		last, ok := m.seen[nd.Name]
		if nd.Connected {
			last, ok = now, true
		}
		if !ok || now.Sub(last) > m.cfg.RelayDownFor {
			continue
		}
		seen[nd.Name] = last
		alive++
		if since, ok := down[nd.Name]; ok && now.Sub(since) >= m.cfg.RelayDownFor {
			failing = append(failing, nd.Name)
		}
	}
	m.seen = seen // nodes gone from the view are forgotten
	if !v.InMajority || 2*len(failing) <= alive {
		return ""
	}
	slices.Sort(failing)
	return fmt.Sprintf("relay links to %d of %d nodes down for %v or more (%s)",
		len(failing), alive, m.cfg.RelayDownFor, strings.Join(failing, " "))
}

// checkDataDir writes, syncs and removes a probe file in DataDir (made if
// missing, as the node would when saving there). A node without DataDir,
// or a temporary one, keeps nothing on disk and is not checked. A probe
// that has not finished within probeHang is a fault until it finishes; its
// goroutine is left to finish on its own.
func (m *faultMonitor) checkDataDir(ctx context.Context) error {
	dir := m.n.cfg.DataDir
	if dir == "" || m.n.cfg.Temporary {
		return nil
	}
	if m.probe == nil {
		m.probe = make(chan error, 1)
		go func(res chan<- error) { res <- probeDir(dir) }(m.probe)
	}
	t := time.NewTimer(probeHang)
	defer t.Stop()
	select {
	case err := <-m.probe:
		m.probe = nil
		return err
	case <-t.C:
		return fmt.Errorf("a write to %s has not finished in %v", dir, probeHang)
	case <-ctx.Done():
		return nil
	}
}

func probeDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	path := filepath.Join(dir, dataDirProbe)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString("shoal\n")
	if err == nil {
		err = f.Sync()
	}
	err = errors.Join(err, f.Close())
	if rerr := os.Remove(path); err == nil {
		err = rerr
	}
	return err
}

// apply sets the node's mode for the faults found: blocked while there are
// some, back to the mode it replaced when they are gone. It changes a mode
// only if it is still the one it read (cluster.Node.SwapMode), so that an
// operator's SetMode always wins: an operator's block_new_connection is
// left alone, and a mode the operator sets while the node is blocked for a
// fault stays until the faults clear.
func (m *faultMonitor) apply(faults []string) {
	member, log := m.n.member, m.n.log
	const block = affinity.ModeBlockNewConnection
	if len(faults) == 0 {
		if m.blocked {
			if ok, err := member.SwapMode(block, m.reason, m.prevMode, m.prevReason); err != nil {
				log.Warn("local fault cleared; cannot restore the mode", "mode", m.prevMode.String(), "err", err)
				return // tried again at the next check
			} else if ok {
				log.Info("local fault cleared; mode restored", "mode", m.prevMode.String())
			}
		}
		m.blocked, m.yielded = false, false
		return
	}
	reason := cutReason("local fault: " + strings.Join(faults, "; "))
	if m.yielded {
		return
	}
	mode, cur := member.Mode()
	if m.blocked {
		if mode != block || cur != m.reason {
			m.blocked, m.yielded = false, true
			log.Info("the mode was set while the node was blocked for a local fault; it stays until the fault clears",
				"mode", mode.String(), "fault", reason)
			return
		}
		if reason == m.reason {
			return
		}
	} else if mode == block {
		return // the operator's block stands
	}
	ok, err := member.SwapMode(mode, cur, block, reason)
	if err != nil {
		log.Warn("local fault; cannot block the node", "fault", reason, "err", err)
	}
	if !ok {
		return // the mode changed meanwhile: decided again at the next check
	}
	if !m.blocked {
		m.blocked, m.prevMode, m.prevReason = true, mode, cur
		log.Warn("local fault: the node blocks new connections until it clears", "fault", reason)
	}
	m.reason = reason
}

// cutReason cuts a reason to the 200 bytes a mode_reason keeps, at a
// character boundary, so that the mode shown is the one set.
func cutReason(s string) string {
	const max = 200
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}
