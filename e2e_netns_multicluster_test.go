package shoal_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	shoal "github.com/shoal-sfu/shoal"
	"github.com/shoal-sfu/shoal/cluster/multicluster"
	"github.com/shoal-sfu/shoal/internal/testutil"
)

// TestE2ENetnsTwoRegions runs two clusters of three nodes as six real
// processes (examples/multi-cluster's one-node mode), each in a network
// namespace of its own on one bridge, with a redis-server as their gossip
// channel and a Chromium page in each region: the pages see and hear each
// other; then the bridge of the publisher's region is killed (SIGKILL) and
// media resumes through another gateway; then the regions are cut from
// each other (prohibit routes in every namespace): each keeps serving its
// page, and the media crosses again once the cut heals. No delay between
// the regions (this kernel has no netem). Set SHOAL_NETNS_MULTICLUSTER=1
// (root). Of its first four runs, one failed at the heal (media not back
// within 90 s; its logs were not kept, the cause is not known); the others
// saw media back 2.5 to 4.6 s after the heal.
func TestE2ENetnsTwoRegions(t *testing.T) {
	if os.Getenv("SHOAL_NETNS_MULTICLUSTER") == "" {
		t.Skip("set SHOAL_NETNS_MULTICLUSTER=1 (needs root, ip, chromium, redis-server)")
	}
	requireNetns(t)
	requireBrowser(t)
	redisBin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed")
	}
	sweepNetns(t)
	bin := filepath.Join(t.TempDir(), "multi-cluster")
	run(t, "go", "build", "-o", bin, "./examples/multi-cluster")

	pid := os.Getpid()
	br := fmt.Sprintf("shbm%d", pid%10000000)
	subnet := byte(pid % 250)
	host := netip.AddrFrom4([4]byte{10, 253, subnet, 1})
	t.Cleanup(func() { exec.Command("ip", "link", "del", br).Run() })
	run(t, "ip", "link", "add", br, "type", "bridge")
	run(t, "ip", "addr", "add", host.String()+"/24", "dev", br)
	run(t, "ip", "link", "set", br, "up")

	redisPort := testutil.FreePort(t, host)
	redis := exec.Command(redisBin, "--bind", host.String(), "--port", strconv.Itoa(redisPort), "--save", "",
		"--appendonly", "no", "--dir", t.TempDir(), "--protected-mode", "no")
	if err := redis.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { redis.Process.Kill(); redis.Wait() })

	type proc struct {
		name string
		ns   string
		ip   netip.Addr
		cmd  *exec.Cmd
		done chan struct{}
	}
	key := func(s string) string { return hex.EncodeToString([]byte(fmt.Sprintf("%-32s", s))) }
	mcKey := key("netns multi-cluster key")
	regions := map[string][]*proc{}
	var all []*proc
	for r, region := range []string{"a", "b"} {
		var names []string
		var ps []*proc
		for i := 1; i <= 3; i++ {
			ip := netip.AddrFrom4([4]byte{10, 253, subnet, byte(10 + r*10 + i)})
			ps = append(ps, &proc{name: fmt.Sprintf("%s%d@%v", region, i, ip), ip: ip})
			names = append(names, ps[len(ps)-1].name)
		}
		for i, p := range ps {
			tag := fmt.Sprintf("%d-m%s%d", pid, region, i+1)
			ns, veth, peer := netnsPrefix+tag, fmt.Sprintf("shm%d%s%d", pid%10000000, region, i+1), fmt.Sprintf("shq%d%s%d", pid%10000000, region, i+1)
			p.ns = ns
			t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run(); exec.Command("ip", "link", "del", veth).Run() })
			run(t, "ip", "netns", "add", ns)
			run(t, "ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
			run(t, "ip", "link", "set", peer, "netns", ns)
			run(t, "ip", "link", "set", veth, "master", br)
			run(t, "ip", "link", "set", veth, "up")
			run(t, "ip", "netns", "exec", ns, "ip", "addr", "add", p.ip.String()+"/24", "dev", peer)
			run(t, "ip", "netns", "exec", ns, "ip", "link", "set", peer, "up")
			run(t, "ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
			args := []string{"netns", "exec", ns, bin, "-name", p.name, "-cluster-id", region, "-key", key("cluster key of " + region),
				"-mc-key", mcKey, "-redis", fmt.Sprintf("redis://%v:%d", host, redisPort), "-http-port", "8080", "-log", "warn"}
			if i == 0 {
				args = append(args, "-init", strings.Join(names, ","))
			}
			p.cmd = exec.Command("ip", args...)
			p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if testing.Verbose() {
				p.cmd.Stderr = os.Stderr
			}
			if err := p.cmd.Start(); err != nil {
				t.Fatal(err)
			}
			p.done = make(chan struct{})
			go func() { p.cmd.Wait(); close(p.done) }()
			t.Cleanup(func() {
				syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
				select {
				case <-p.done:
				case <-time.After(10 * time.Second):
					syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
					<-p.done
				}
			})
		}
		regions[region] = ps
		all = append(all, ps...)
	}
	base := func(p *proc) string { return fmt.Sprintf("http://%v:8080", p.ip) }
	for _, p := range all {
		testutil.Eventually(t, func() bool {
			resp, err := http.Get(base(p) + "/")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		}, 60*time.Second, "%s serves its page", p.name)
	}
	ctx := testutil.Context(t, 60*time.Second)
	admin := func(p *proc, target, body string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base(p)+"/api", strings.NewReader(body))
		req.Header.Set("x-sora-target", target)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	testutil.Eventually(t, func() bool {
		st, _ := admin(regions["a"][0], shoal.TargetSetMultiClusterConfiguration, `{"clusters":["a","b"]}`)
		return st == 200
	}, 30*time.Second, "configuration set")
	gateways := func(p *proc) []map[string]any {
		_, body := admin(p, shoal.TargetListGateways, "")
		var gws []map[string]any
		json.Unmarshal([]byte(body), &gws)
		return gws
	}
	testutil.Eventually(t, func() bool {
		n := 0
		for _, g := range gateways(regions["b"][2]) {
			if g["status"] == "active" {
				n++
			}
		}
		return n == 6
	}, 60*time.Second, "six active gateways known in b")

	var aNames []string
	for _, p := range regions["a"] {
		aNames = append(aNames, p.name)
	}
	channel := ""
	for i := 0; channel == ""; i++ {
		if c := fmt.Sprintf("netns-room-%d", i); multicluster.Bridge(c, aNames) != aNames[1] {
			channel = c
		}
	}
	r := newReports(t)
	page := func(p *proc) *e2eNode {
		return &e2eNode{base: base(p), signaling: fmt.Sprintf("ws://%v:8080/signaling", p.ip)}
	}
	names := []string{"tokyo", "frankfurt"}
	// The pages come from the namespaces' addresses, which are no secure
	// context: Chromium is started here, told to treat them as secure (for
	// the camera).
	r.mu.Lock()
	r.browser = true
	r.mu.Unlock()
	r.open(r.examplePage(page(regions["a"][1]), names[0], channel), r.examplePage(page(regions["b"][2]), names[1], channel))
	var origins []string
	for _, p := range all {
		origins = append(origins, base(p))
	}
	testutil.BrowserWith(t, r.base+"/", testutil.BrowserOptions{SecureOrigins: origins})
	waitMediaAndMessages(t, r, names)

	// Kill the bridge of a (SIGKILL: no goodbye).
	bridge := multicluster.Bridge(channel, aNames)
	var victim *proc
	for _, p := range regions["a"] {
		if p.name == bridge {
			victim = p
		}
	}
	tokyoID := r.state(names[0]).ConnectionID
	before := r.state(names[1]).FramesDecoded[tokyoID]
	killed := time.Now()
	syscall.Kill(-victim.cmd.Process.Pid, syscall.SIGKILL)
	<-victim.done
	r.waitAll(60*time.Second, "frankfurt decodes tokyo again after a's bridge was killed", names[1:], func(st pageState) bool {
		return st.FramesDecoded[tokyoID] > before+30
	})
	t.Logf("bridge %s killed; frankfurt decoding tokyo's video again (30 more frames) %v later", bridge, time.Since(killed).Round(time.Millisecond))
	var buf bytes.Buffer
	json.NewEncoder(&buf).Encode(gateways(regions["b"][0]))
	t.Logf("gateways seen in b: %s", buf.String())

	// The regions cut from each other: in every namespace, the other
	// region's addresses are unreachable (the host, the browser's, still
	// reaches both). Each keeps serving its own page; healed, the media
	// crosses again.
	route := func(op string) {
		for _, x := range all {
			for _, y := range all {
				if x.name[0] != y.name[0] && x != victim && y != victim {
					run(t, "ip", "netns", "exec", x.ns, "ip", "route", op, "prohibit", y.ip.String()+"/32")
				}
			}
		}
	}
	route("add")
	cut := time.Now()
	time.Sleep(3 * time.Second)
	stalled := r.state(names[1]).FramesDecoded[tokyoID]
	time.Sleep(3 * time.Second)
	if got := r.state(names[1]).FramesDecoded[tokyoID]; got > stalled+10 {
		t.Errorf("frankfurt decoded %d frames of tokyo while the regions were cut", got-stalled)
	}
	for _, n := range names {
		if st := r.state(n); st.State != "connected" {
			t.Errorf("page %s is %s while the regions are cut: each region must keep serving its own", n, st.State)
		}
	}
	route("del")
	healed := time.Now()
	if !testutil.WaitFor(func() bool { return r.state(names[1]).FramesDecoded[tokyoID] > stalled+30 }, 90*time.Second) {
		// Say which side broke: a page that reconnected has a new
		// connection id (its node left the majority for a moment, say),
		// and frankfurt waits for tokyo's old one in vain.
		for _, n := range names {
			st := r.state(n)
			st.Messages = nil
			b, _ := json.Marshal(st)
			t.Logf("page %s: %s", n, b)
		}
		if id := r.state(names[0]).ConnectionID; id != tokyoID {
			t.Fatalf("frankfurt did not decode tokyo again within 90 s of the heal: tokyo reconnected meanwhile (connection %s, was %s)", id, tokyoID)
		}
		t.Fatalf("frankfurt did not decode tokyo again within 90 s of the heal (tokyo still on connection %s)", tokyoID)
	}
	t.Logf("regions cut for %v; frankfurt decoding tokyo's video again (30 more frames) %v after the heal",
		healed.Sub(cut).Round(time.Millisecond), time.Since(healed).Round(time.Millisecond))
}
