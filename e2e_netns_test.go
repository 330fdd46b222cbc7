package shoal_test

// End-to-end test of simulcast under a limited downlink: a recvonly
// Chromium (the published sora-js-sdk, unchanged) runs in a network
// namespace of its own, joined to the host's by a veth pair whose host end
// is rate-limited with tc's token bucket filter (this kernel has no
// netem). The Shoal node, the publisher's Chromium and an unlimited
// subscriber's Chromium stay in the host's namespace; the node's SFU
// gathers candidates on the veth's host address only, so that the limited
// subscriber's media crosses the limit while the others' stays local.
//
// It needs root, ip and tc (iproute2); without them it is skipped.

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	shoal "github.com/shoal-sfu/shoal"
	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/sfu"
)

// netnsSeq makes the namespaces of one test process distinct.
var netnsSeq atomic.Int32

// netnsLink is a network namespace joined to the host's by a veth pair:
// hostDev (hostIP, in the host's namespace) and its peer (nsIP, in ns).
type netnsLink struct {
	ns      string
	hostDev string
	hostIP  netip.Addr
	nsIP    netip.Addr
}

// requireNetns skips the test unless it can make network namespaces and
// traffic control qdiscs: root, and ip and tc on the PATH.
func requireNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespace tests need root (ip netns, tc)")
	}
	for _, bin := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("network namespace tests need %s (iproute2): %v", bin, err)
		}
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		t.Skipf("ip netns is not available: %v: %s", err, out)
	}
}

// run runs a command, failing the test if it fails.
func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// netnsPrefix starts the names of the test's namespaces:
// shoal-e2e-<pid>-<n>, their veth ends being shh<pid>-<n> (host) and
// shn<pid>-<n>.
const netnsPrefix = "shoal-e2e-"

// newNetns makes a namespace and its veth pair, with names and a /30
// subnet of 10.254.0.0/16 unique to this process and call, and removes
// them when the test ends, failed or not. What a killed test process left
// behind is removed first (sweepNetns).
func newNetns(t *testing.T) *netnsLink {
	t.Helper()
	sweepNetns(t)
	n := int(netnsSeq.Add(1))
	id := fmt.Sprintf("%d-%d", os.Getpid(), n)
	sub := (os.Getpid()*4 + n) % 16384 // the /30's index in 10.254.0.0/16
	base := netip.AddrFrom4([4]byte{10, 254, byte(sub >> 6), byte(sub&63) * 4})
	l := &netnsLink{ns: netnsPrefix + id, hostDev: "shh" + id, hostIP: base.Next(), nsIP: base.Next().Next()}
	t.Cleanup(func() {
		// Deleting the namespace deletes the veth pair; the host end goes
		// too if the peer never moved in.
		exec.Command("ip", "netns", "del", l.ns).Run()
		exec.Command("ip", "link", "del", l.hostDev).Run()
	})
	run(t, "ip", "netns", "add", l.ns)
	run(t, "ip", "link", "add", l.hostDev, "type", "veth", "peer", "name", "shn"+id)
	run(t, "ip", "link", "set", "shn"+id, "netns", l.ns)
	run(t, "ip", "addr", "add", l.hostIP.String()+"/30", "dev", l.hostDev)
	run(t, "ip", "link", "set", l.hostDev, "up")
	run(t, "ip", "netns", "exec", l.ns, "ip", "addr", "add", l.nsIP.String()+"/30", "dev", "shn"+id)
	run(t, "ip", "netns", "exec", l.ns, "ip", "link", "set", "shn"+id, "up")
	run(t, "ip", "netns", "exec", l.ns, "ip", "link", "set", "lo", "up")
	return l
}

// sweepNetns removes the namespaces (and their veths) of test processes
// that no longer run: a test killed before its cleanup (a timeout, a
// signal) leaves them, with its namespace's Chromium still running in
// them, which is stopped.
func sweepNetns(t *testing.T) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], netnsPrefix) {
			continue
		}
		id := strings.TrimPrefix(f[0], netnsPrefix)
		pidText, _, _ := strings.Cut(id, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue // not ours, or its test still runs
		}
		if pids, err := exec.Command("ip", "netns", "pids", f[0]).Output(); err == nil {
			for _, p := range strings.Fields(string(pids)) {
				if p, err := strconv.Atoi(p); err == nil && p > 1 {
					syscall.Kill(p, syscall.SIGKILL)
				}
			}
		}
		exec.Command("ip", "netns", "del", f[0]).Run()
		exec.Command("ip", "link", "del", "shh"+id).Run()
		t.Logf("removed %s, left by test process %d", f[0], pid)
	}
}

// limit rate-limits what the host sends into the namespace to rate (tc's
// notation: "300kbit"), with a token bucket: bursts of 4 KB, a queue of
// 40 KB (about a second at 300 kbit/s) before packets are dropped.
func (l *netnsLink) limit(t *testing.T, rate string) {
	t.Helper()
	run(t, "tc", "qdisc", "replace", "dev", l.hostDev, "root", "tbf", "rate", rate, "burst", "4kb", "limit", "40kb")
}

// unlimit removes the limit.
func (l *netnsLink) unlimit(t *testing.T) {
	t.Helper()
	run(t, "tc", "qdisc", "del", "dev", l.hostDev, "root")
}

// browser opens url in a headless Chromium inside the namespace (flags as
// testutil.Browser's), stopped when the test ends.
func (l *netnsLink) browser(t *testing.T, url string) {
	t.Helper()
	testutil.BrowserWith(t, url, testutil.BrowserOptions{Netns: l.ns})
}

// netnsNode starts a single node whose signaling listens on l's host
// address and whose SFU gathers candidates there only, with the default
// keyframe interval (the tests' 100 ms lets a lossy subscriber's PLIs
// double a layer's bitrate).
func netnsNode(t *testing.T, l *netnsLink) *e2eNode {
	t.Helper()
	host := net.IP(l.hostIP.AsSlice())
	return e2eSoloNode(t, l.hostIP, &sfu.NetworkConfig{IPFilter: func(ip net.IP) bool { return ip.Equal(host) }},
		func(c *shoal.Config) { c.SFU.KeyframeInterval = 0 })
}

// e2eSoloNode starts a single node (no cluster) whose signaling listens on
// ip, its SFU on network (nil: loopback, as the other tests), its Config
// changed by mutate.
func e2eSoloNode(t *testing.T, ip netip.Addr, network *sfu.NetworkConfig, mutate ...func(*shoal.Config)) *e2eNode {
	t.Helper()
	cfg := testSoloConfig(t, e2eLogLevel())
	cfg.NodeName = "solo@" + ip.String()
	cfg.Signaling.AnyOrigin = true
	if network != nil {
		cfg.SFU.Network = *network
	}
	for _, m := range mutate {
		m(&cfg)
	}
	ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	n := serveNode(t, cfg, ln)
	return &e2eNode{Node: n, ip: ip, base: "http://" + ln.Addr().String(), signaling: "ws://" + ln.Addr().String() + "/signaling"}
}

// serveOn serves r's pages (the SDK, the simulcast page, the reports) on
// addr too, for a browser that cannot reach r's loopback address, and
// returns its base URL.
func (r *reports) serveOn(t *testing.T, addr netip.Addr) string {
	t.Helper()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: r.mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// lastSwitch returns the layer the page's last simulcast.switched notify
// switched to ("" if none came).
func lastSwitch(st pageState) string {
	for i := len(st.Log) - 1; i >= 0; i-- {
		if f := strings.Fields(st.Log[i]); len(f) >= 2 && f[0] == "switched" {
			_, cur, _ := strings.Cut(f[1], ">")
			return cur
		}
	}
	return ""
}

// TestE2ENetnsSimulcastCongestion: a publisher sends r0/r1/r2 (Chromium,
// simulcast: true); two recvonly subscribers ask for r2: one on the host,
// one in a network namespace. Both first decode r2's frame size (the SDK
// told of the start by a notify from none). Then the namespace's link is
// limited to 300 kbit/s: its subscriber settles on r0 (notify and decoded
// frame size) and stays there, while the unlimited one stays above r0.
// With SHOAL_E2E_LONG=1 the limited one must also keep decoding (at least
// half the publisher's frame rate) and, once the limit is lifted, climb
// back to the top layer. The frames decoded each second and the times to
// settle and to recover are logged.
func TestE2ENetnsSimulcastCongestion(t *testing.T) {
	requireBrowser(t)
	requireNetns(t)
	dir := soraSDKDir(t)
	l := newNetns(t)
	node := netnsNode(t, l)
	r := newReports(t)
	serveSDK(t, r, dir)
	sims := serveSimulcast(t, r)
	nsBase := r.serveOn(t, l.hostIP)

	simulcastPublisher(t, r, sims, simulcastURL(r, node, "pub", "sendonly", ""))
	r.open(simulcastURL(r, node, "free", "recvonly", "r2"))
	l.browser(t, strings.Replace(simulcastURL(r, node, "lim", "recvonly", "r2"), r.base, nsBase, 1))
	r.waitAll(60*time.Second, "the receivers connected", []string{"free", "lim"}, func(st pageState) bool { return st.State == "connected" })
	pubID := r.state("pub").ConnectionID
	height := func(rid string) int { return sims.get("pub").Out[rid].Height }
	// Both reach the publisher's highest layer (r1 when its encoder holds
	// r2 back, as under the race detector: then r2 is never sent at all).
	top := func() string {
		if height("r2") > height("r1") {
			return "r2"
		}
		return "r1"
	}
	testutil.Eventually(t, func() bool {
		for _, n := range []string{"free", "lim"} {
			if in := sims.get(n).inbound(); in.Frames < 30 || in.Height != height(top()) {
				return false
			}
		}
		return height("r0") > 0 && height("r0") < height("r1")
	}, 60*time.Second, "both subscribers decode the top layer")
	for _, n := range []string{"free", "lim"} {
		if log := r.state(n).Log; len(log) == 0 || !strings.HasPrefix(log[0], "switched none>") || !strings.HasSuffix(log[0], pubID) {
			t.Fatalf("%s: the first simulcast.switched notify is not the start (from none): %q", n, log)
		}
	}
	t.Logf("publisher sends r0 %dp, r1 %dp, r2 %dp (scalability modes %s %s %s); both subscribers decode %dp (%s)", height("r0"), height("r1"), height("r2"),
		sims.get("pub").Out["r0"].Mode, sims.get("pub").Out["r1"].Mode, sims.get("pub").Out["r2"].Mode, height(top()), top())

	// Limit the namespace's downlink.
	l.limit(t, "300kbit")
	limited := time.Now()
	var notified, decoded time.Duration
	testutil.Eventually(t, func() bool {
		if notified == 0 && lastSwitch(r.state("lim")) == "r0" {
			notified = time.Since(limited)
		}
		if decoded == 0 && sims.get("lim").inbound().Height == height("r0") {
			decoded = time.Since(limited)
		}
		return notified > 0 && decoded > 0
	}, 60*time.Second, "the limited subscriber settles on r0")
	t.Logf("limited to 300 kbit/s: the limited subscriber was told of r0 after %v and decoded r0 (%dp) after %v; its notifies: %q",
		notified.Round(100*time.Millisecond), height("r0"), decoded.Round(100*time.Millisecond), r.state("lim").Log)
	// It keeps decoding, never above r0 (when its estimate dips under r0's
	// bitrate the congestion control forwards fewer of r0's temporal
	// layers instead of pausing it); the unlimited one keeps its layer.
	var limFPS, freeFPS []string
	limFrames, freeFrames, pauses := 0, 0, 0
	pli0, nack0, est0 := limVideoStats(node, r.state("lim").ConnectionID)
	window := time.Now()
	for range 10 {
		l0, f0, n0 := sims.get("lim").inbound().Frames, sims.get("free").inbound().Frames, len(r.state("lim").Log)
		time.Sleep(time.Second)
		dl, df := sims.get("lim").inbound().Frames-l0, sims.get("free").inbound().Frames-f0
		limFrames, freeFrames = limFrames+dl, freeFrames+df
		limFPS, freeFPS = append(limFPS, fmt.Sprint(dl)), append(freeFPS, fmt.Sprint(df))
		for _, e := range r.state("lim").Log[n0:] {
			switch {
			case strings.HasPrefix(e, "switched r0>none "):
				pauses++
			case !strings.HasPrefix(e, "switched none>r0 "):
				t.Errorf("limited: %q while limited", e)
			}
		}
	}
	pli1, nack1, est1 := limVideoStats(node, r.state("lim").ConnectionID)
	gap := sims.get("lim").longestGap(window)
	t.Logf("the next 10 s, frames decoded each second: limited (r0) %s (%d, longest without a frame %v); unlimited (%s) %s; the limited one's video paused %d times, "+
		"sent %d keyframe requests and %d NACKs, its estimate went %d -> %d kbit/s (load average %s)",
		strings.Join(limFPS, " "), limFrames, gap.Round(10*time.Millisecond), top(), strings.Join(freeFPS, " "), pauses, pli1-pli0, nack1-nack0, est0/1000, est1/1000, loadavg())
	// What it decoded is r0's size, steadily: never 1.5 s without a frame
	// (a pause would be 3 s at least), and a fifth of the publisher's frames
	// at least (r0's temporal layer 0 alone is a quarter of them; its
	// estimate on this link, 70 to 170 kbit/s, gives it TID 0, or 0 and 1,
	// or all of r0, in turn).
	long := os.Getenv("SHOAL_E2E_LONG") != ""
	if lim := sims.get("lim").inbound(); lim.Height != height("r0") {
		t.Errorf("limited: the last frame decoded is %dp, not r0's %dp", lim.Height, height("r0"))
	}
	if limFrames < 40 {
		t.Errorf("limited: %d frames decoded in 10 s: under a fifth of the publisher's 20 a second", limFrames)
	}
	if gap > 1500*time.Millisecond {
		t.Errorf("limited: %v without a frame decoded", gap)
	}
	// The unlimited one stays above r0. Its own estimate may take it down a
	// layer for a while when the host is loaded (its packets wait for a
	// CPU: delay, to GCC), which is logged.
	if free := sims.get("free").inbound(); freeFrames < 100 || free.Height <= height("r0") {
		t.Errorf("unlimited: %d frames decoded in 10 s, the last at %dp: not above r0 (%dp)", freeFrames, free.Height, height("r0"))
	}
	for _, e := range r.state("free").Log {
		if strings.Contains(e, ">r0 ") || strings.Contains(e, ">none ") {
			t.Errorf("unlimited: %q", e)
		}
	}
	if got := lastSwitch(r.state("free")); got != top() {
		t.Logf("the unlimited subscriber left %s for a while (load average %s): its notifies %q", top(), loadavg(), r.state("free").Log)
	}

	if !long {
		t.Log("SHOAL_E2E_LONG=1 also lifts the limit and waits for the climb back")
		return
	}
	l.unlimit(t)
	lifted := time.Now()
	var steps []string
	last := "r0"
	limID := r.state("lim").ConnectionID
	estimate := func() uint64 {
		for _, c := range node.SFU().Stats() {
			if c.ConnectionID == limID {
				return c.EstimatedBandwidth
			}
		}
		return 0
	}
	logged := time.Now()
	testutil.Eventually(t, func() bool {
		if s := lastSwitch(r.state("lim")); s != last {
			steps = append(steps, fmt.Sprintf("%s at %v", s, time.Since(lifted).Round(100*time.Millisecond)))
			last = s
		}
		if time.Since(logged) >= 10*time.Second {
			logged = time.Now()
			t.Logf("%v after the lift: the limited subscriber decodes %dp, estimate %d kbit/s, notifies: %s",
				time.Since(lifted).Round(time.Second), sims.get("lim").inbound().Height, estimate()/1000, strings.Join(steps, ", "))
		}
		return sims.get("lim").inbound().Height == height(top())
	}, 120*time.Second, "the limited subscriber climbs back once the limit is lifted")
	t.Logf("limit lifted: the subscriber decoded %s (%dp) again after %v (notifies: %s)", top(), height(top()),
		time.Since(lifted).Round(100*time.Millisecond), strings.Join(steps, ", "))
}

// loadavg returns the host's load averages, for the log.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// limVideoStats returns, for connection id of node, the keyframe requests
// and NACKs it sent about the video it receives, and its downlink estimate.
func limVideoStats(node *e2eNode, id string) (plis, nacks, estimate uint64) {
	for _, c := range node.SFU().Stats() {
		if c.ConnectionID != id {
			continue
		}
		for _, o := range c.Outbound {
			plis += o.KeyframeRequests
			nacks += o.NACKs
		}
		return plis, nacks, c.EstimatedBandwidth
	}
	return 0, 0, 0
}
