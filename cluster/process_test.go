package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

// A node process for TestProcessesKilledAndRestarted: the test binary run
// again with SHOAL_CLUSTER_CHILD set. It prints its view as one JSON line
// every 50 ms and exits when its stdin closes (or when killed).
func TestMain(m *testing.M) {
	if os.Getenv("SHOAL_CLUSTER_CHILD") != "" {
		os.Exit(childMain())
	}
	os.Exit(m.Run())
}

type childStatus struct {
	Name       string   `json:"name"`
	InMajority bool     `json:"in_majority"`
	Connected  []string `json:"connected"`
	PID        int      `json:"pid"`
}

func childMain() int {
	env := os.Getenv
	lo, _ := strconv.Atoi(env("SHOAL_CHILD_MIN_PORT"))
	cfg := DefaultConfig()
	cfg.NodeName = env("SHOAL_CHILD_NAME")
	cfg.Cluster = true
	cfg.ExternalSignalingURL = "wss://x.example/signaling"
	cfg.ExternalAPIURL = "https://x.example/api"
	cfg.ListenMinPort, cfg.ListenMaxPort = lo, lo+3
	cfg.ClusterKey = testKey
	cfg.MaxConnections = 100
	cfg.DataDir = env("SHOAL_CHILD_DIR")
	cfg.Timing = FastTiming()
	n, err := New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := n.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer n.Close()
	if list := env("SHOAL_CHILD_INIT"); list != "" {
		go func() {
			for ctx.Err() == nil {
				ictx, icancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := n.InitCluster(ictx, strings.Split(list, ","))
				icancel()
				if err == nil {
					return
				}
				fmt.Fprintln(os.Stderr, "init:", err)
				time.Sleep(200 * time.Millisecond)
			}
		}()
	}
	go func() { io.Copy(io.Discard, os.Stdin); cancel() }()
	enc := json.NewEncoder(os.Stdout)
	for {
		v := n.Snapshot()
		st := childStatus{Name: n.Name(), InMajority: v.InMajority, PID: os.Getpid()}
		for _, node := range v.Nodes {
			if node.Connected {
				st.Connected = append(st.Connected, node.Name)
			}
		}
		if err := enc.Encode(st); err != nil {
			return 0
		}
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(50 * time.Millisecond):
		}
	}
}

type childProc struct {
	name string
	dir  string
	cmd  *exec.Cmd
	in   io.WriteCloser
	mu   sync.Mutex
	last childStatus
	done chan struct{}
}

func (p *childProc) status() childStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

func startChild(t *testing.T, name, dir string, minPort int, initList string) *childProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SHOAL_CLUSTER_CHILD=1", "SHOAL_CHILD_NAME="+name,
		"SHOAL_CHILD_DIR="+dir, "SHOAL_CHILD_MIN_PORT="+strconv.Itoa(minPort), "SHOAL_CHILD_INIT="+initList)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &childProc{name: name, dir: dir, cmd: cmd, in: in, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var st childStatus
			if json.Unmarshal(sc.Bytes(), &st) == nil {
				p.mu.Lock()
				p.last = st
				p.mu.Unlock()
			}
		}
		cmd.Wait()
	}()
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *childProc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.in.Close()
	<-p.done
	p.mu.Lock()
	p.last = childStatus{}
	p.mu.Unlock()
}

// TestProcessesKilledAndRestarted runs three node processes, kills them
// with SIGKILL and restarts them from their data directories: a restarted
// regular node rejoins by itself, a lone survivor of two kills reports
// minority and serves again once the others are back.
func TestProcessesKilledAndRestarted(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	var names []string
	var ips []netip.Addr
	for i := range 3 {
		ip := testutil.LoopbackIP(t)
		ips = append(ips, ip)
		names = append(names, fmt.Sprintf("p%d@%s", i+1, ip))
	}
	port := testutil.FreePort(t, ips[0])
	var ps []*childProc
	for i, name := range names {
		initList := ""
		if i == 0 {
			initList = strings.Join(names, ",")
		}
		ps = append(ps, startChild(t, name, t.TempDir(), port, initList))
	}
	sees := func(p *childProc, majority bool, connected ...string) func() bool {
		return func() bool {
			st := p.status()
			if st.InMajority != majority {
				return false
			}
			for _, c := range connected {
				if !slices.Contains(st.Connected, c) {
					return false
				}
			}
			return true
		}
	}
	for _, p := range ps {
		testutil.Eventually(t, sees(p, true, names...), 20*time.Second, "%s in majority seeing all", p.name)
	}

	// Kill one: the two others keep the majority; restarted, it rejoins.
	ps[2].kill()
	for _, p := range ps[:2] {
		testutil.Eventually(t, func() bool {
			st := p.status()
			return st.InMajority && !slices.Contains(st.Connected, names[2])
		}, 10*time.Second, "%s sees %s gone", p.name, names[2])
	}
	ps[2] = startChild(t, names[2], ps[2].dir, port, "")
	for _, p := range ps {
		testutil.Eventually(t, sees(p, true, names...), 20*time.Second, "%s back to all after restart", p.name)
	}

	// Kill two: the survivor is in minority; restart both and all serve.
	ps[0].kill()
	ps[1].kill()
	testutil.Eventually(t, sees(ps[2], false), 10*time.Second, "survivor in minority")
	ps[0] = startChild(t, names[0], ps[0].dir, port, "")
	ps[1] = startChild(t, names[1], ps[1].dir, port, "")
	for _, p := range ps {
		testutil.Eventually(t, sees(p, true, names...), 20*time.Second, "%s serving after both restarts", p.name)
	}
}
