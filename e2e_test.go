package shoal_test

// End-to-end tests: a real browser (Debian's chromium, headless, fake camera
// and microphone) against three Shoal nodes, with the example's web page and
// with Sora's published JavaScript SDK (sora-js-sdk from npm,
// unchanged). Pages report their state by POSTing JSON to the test's own
// HTTP server every second; the tests wait on those reports.
//
// Without chromium the tests are skipped (failed when CI is set). The SDK
// test needs the npm package: scripts/test.sh installs it into
// $SHOAL_SORA_JS_SDK (see soraSDKDir).

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	shoal "github.com/shoal-sfu/shoal"
	"github.com/shoal-sfu/shoal/examples/minimal-cluster/web"
	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/relay"
	"github.com/shoal-sfu/shoal/sfu"
	"github.com/shoal-sfu/shoal/signaling"
)

// e2eKey is the cluster key of the test clusters.
var e2eKey = []byte("e2e-test-cluster-key-32-bytes!!!")

// e2eNode is one in-process node with its HTTP server: the example's page at
// /, signaling at /signaling, the admin API at /api.
type e2eNode struct {
	*shoal.Node
	ip        netip.Addr
	base      string // http://ip:port
	signaling string // ws://ip:port/signaling
	srv       *http.Server
	delay     atomic.Int64 // before each signaling request, in ns
}

// e2eCluster starts three nodes and initialises the cluster.
func e2eCluster(t *testing.T, affinity bool, mutate ...func(*shoal.Config)) []*e2eNode {
	t.Helper()
	log := keepLogger(t, e2eLogLevel()) // Debug kept, printed if the test fails
	ips := testutil.LoopbackIPs(t, 3)
	base := testutil.FreePort(t, ips[0])
	var nodes []*e2eNode
	var names []string
	for i, ip := range ips {
		hp := netip.AddrPortFrom(ip, uint16(testutil.FreePort(t, ip))).String()
		cfg := testClusterConfig(fmt.Sprintf("n%d@%v", i+1, ip), base)
		cfg.DefaultAffinity = affinity
		cfg.MaxConnections = 50
		cfg.DataDir = t.TempDir()
		cfg.ExternalSignalingURL = "ws://" + hp + "/signaling"
		cfg.ExternalAPIURL = "http://" + hp + "/api"
		cfg.Signaling.AnyOrigin = true // the SDK page is served by the test's server
		if os.Getenv("SHOAL_TEST_UDP_MUX") != "0" {
			// Every connection on one UDP port, as in production: the
			// SFU's direct send path needs it (SHOAL_TEST_UDP_MUX=0 gives
			// each connection its own ephemeral port instead).
			cfg.SFU.Network.UDPPort = testutil.FreePort(t, ip)
			cfg.SFU.Network.ListenIP = ip
		}
		for _, m := range mutate {
			m(&cfg)
		}
		cfg.Logger = log // the node adds node=<NodeName>
		n, err := shoal.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		if cfg.SFU.Network.UDPPort != 0 {
			t.Cleanup(func() { t.Logf("%s: %+v", cfg.NodeName, n.SFU().MuxStats()) })
		}
		if err := n.Start(testutil.Context(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", hp)
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		mux.Handle("/", web.Handler())
		mux.Handle("/cluster.json", web.StatusHandler(n))
		mux.Handle("/api", web.AdminHandler(n))
		en := &e2eNode{Node: n, ip: ip, base: "http://" + hp, signaling: cfg.ExternalSignalingURL}
		mux.Handle("/signaling", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if d := en.delay.Load(); d > 0 {
				time.Sleep(time.Duration(d)) // a node farther away than the others
			}
			n.SignalingHandler().ServeHTTP(w, req)
		}))
		srv := &http.Server{Handler: mux}
		en.srv = srv
		go srv.Serve(ln)
		t.Cleanup(func() { n.Close(); srv.Close() })
		nodes = append(nodes, en)
		names = append(names, cfg.NodeName)
	}
	if _, err := nodes[0].InitCluster(testutil.Context(t, 20*time.Second), names); err != nil {
		t.Fatalf("InitCluster: %v", err)
	}
	for _, n := range nodes {
		testutil.Eventually(t, n.Ready, 15*time.Second, "%s in the majority", n.Name())
	}
	return nodes
}

func e2eLogLevel() slog.Level {
	if os.Getenv("SHOAL_E2E_DEBUG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}

// pageState is window.shoalTest of the example page, or the SDK page's
// equivalent.
type pageState struct {
	Name          string           `json:"name"`
	State         string           `json:"state"`
	Error         string           `json:"error"`
	URL           string           `json:"url"`
	Contact       string           `json:"contact"` // SDK page: the URL connect was first sent to
	Redirects     int              `json:"redirects"`
	ConnectionID  string           `json:"connectionId"`
	Remotes       []string         `json:"remotes"`
	FramesDecoded map[string]int   `json:"framesDecoded"`
	Messages      []map[string]any `json:"messages"`
	Connects      int              `json:"connects"`
	Log           []string         `json:"log"`
	MLines        int              `json:"mlines"` // SDK page: m-lines in the current remote description
	WS            bool             `json:"ws"`     // SDK page: the SDK's signaling WebSocket is open
	// Example page: RTP sent and received (retransmissions left out), and
	// the names it labels the others' videos with, by connection id.
	RTP   pageRTP           `json:"rtp"`
	Names map[string]string `json:"names"`
	// Cluster page: the nodes and channels it shows.
	ClusterNodes    []string `json:"clusterNodes"`
	ClusterChannels []string `json:"clusterChannels"`
}

type pageRTP struct {
	PacketsSent, BytesSent, PacketsReceived, BytesReceived float64
}

// reports is the test's HTTP server: it serves the launcher page (one
// iframe per client page, so that one browser runs them all) and receives
// the pages' reports.
type reports struct {
	t       *testing.T
	base    string
	mu      sync.Mutex
	states  map[string]pageState
	frames  []string // iframe URLs shown by the launcher
	browser bool
	mux     *http.ServeMux
}

func newReports(t *testing.T) *reports {
	r := &reports{t: t, states: map[string]pageState{}, mux: http.NewServeMux()}
	r.mux.HandleFunc("/report", func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		var st pageState
		if err := json.Unmarshal(b, &st); err != nil {
			t.Logf("bad report: %v: %q", err, b)
			return
		}
		r.mu.Lock()
		if prev, ok := r.states[st.Name]; !ok || prev.State != st.State || prev.URL != st.URL {
			t.Logf("page %s: %s %s via %s (redirects %d) %s", st.Name, st.State, st.ConnectionID, st.URL, st.Redirects, st.Error)
		}
		r.states[st.Name] = st
		r.mu.Unlock()
	})
	r.mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/" {
			http.NotFound(w, req)
			return
		}
		// The launcher shows the frames the test has added so far, polling
		// for more.
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, `<!doctype html><body><script>
let shown = 0;
setInterval(async () => {
  const srcs = await (await fetch("/frames")).json();
  for (; shown < srcs.length; shown++) {
    const f = document.createElement("iframe");
    f.allow = "camera; microphone; autoplay"; f.width = 400; f.height = 300; f.src = srcs[shown];
    document.body.append(f);
  }
}, 100);
</script>`)
	})
	r.mux.HandleFunc("/frames", func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		defer r.mu.Unlock()
		json.NewEncoder(w).Encode(append([]string{}, r.frames...))
	})
	ip := testutil.LoopbackIP(t)
	ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: r.mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	r.base = "http://" + ln.Addr().String()
	return r
}

// examplePage is the URL of the example page on node, connecting to the
// given signaling URLs.
func (r *reports) examplePage(node *e2eNode, name, channel string, signalingURLs ...string) string {
	q := url.Values{"auto": {"1"}, "channel": {channel}, "name": {name}, "chat": {"700"}, "report": {r.base + "/report"}}
	if len(signalingURLs) > 0 {
		q.Set("signaling", strings.Join(signalingURLs, ","))
	}
	return node.base + "/?" + q.Encode()
}

// open shows frames in the launcher page, and starts the browser on it the
// first time.
func (r *reports) open(frames ...string) {
	r.mu.Lock()
	r.frames = append(r.frames, frames...)
	start := !r.browser
	r.browser = true
	r.mu.Unlock()
	if start {
		testutil.Browser(r.t, r.base+"/")
	}
}

func (r *reports) state(name string) pageState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.states[name]
}

// waitAll waits until cond holds for every named page at once.
func (r *reports) waitAll(timeout time.Duration, what string, names []string, cond func(pageState) bool) {
	r.t.Helper()
	ok := testutil.WaitFor(func() bool {
		for _, n := range names {
			if !cond(r.state(n)) {
				return false
			}
		}
		return true
	}, timeout)
	if !ok {
		for _, n := range names {
			st := r.state(n)
			st.Messages = nil
			b, _ := json.Marshal(st)
			r.t.Logf("page %s: %s", n, b)
		}
		r.t.Fatalf("not reached within %v: %s", timeout, what)
	}
}

// sees reports whether st receives decoding video from every one of the
// other pages' connections (by connection id), with at least min frames.
func sees(st pageState, others []string, min int) bool {
	for _, id := range others {
		if id == "" || st.FramesDecoded[id] < min {
			return false
		}
	}
	return true
}

func heardFrom(st pageState, names ...string) bool {
	for _, n := range names {
		if !slices.ContainsFunc(st.Messages, func(m map[string]any) bool { return m["from"] == n }) {
			return false
		}
	}
	return true
}

func otherIDs(r *reports, names []string, self string) []string {
	var ids []string
	for _, n := range names {
		if n != self {
			ids = append(ids, r.state(n).ConnectionID)
		}
	}
	return ids
}

// waitMediaAndMessages waits until every page decodes the video of every
// other page (frames still growing) and has messages from every other page.
func waitMediaAndMessages(t *testing.T, r *reports, names []string) {
	t.Helper()
	r.waitAll(60*time.Second, "every page decodes every other page's video", names, func(st pageState) bool {
		return st.State == "connected" && sees(st, otherIDs(r, names, st.Name), 10)
	})
	before := map[string]pageState{}
	for _, n := range names {
		before[n] = r.state(n)
	}
	r.waitAll(20*time.Second, "frames keep decoding", names, func(st pageState) bool {
		for _, id := range otherIDs(r, names, st.Name) {
			if st.FramesDecoded[id] <= before[st.Name].FramesDecoded[id]+5 {
				return false
			}
		}
		return true
	})
	r.waitAll(20*time.Second, "messages cross between every pair of pages", names, func(st pageState) bool {
		var others []string
		for _, n := range names {
			if n != st.Name {
				others = append(others, n)
			}
		}
		return heardFrom(st, others...)
	})
}

func requireBrowser(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end browser test; skipped with -short")
	}
	if testutil.ChromiumPath() == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed (scripts/test.sh installs it)")
		}
		t.Skip("chromium is not installed; scripts/test.sh installs it")
	}
}

// TestE2EThreePagesThroughRelay: affinity off, one page per node, one
// channel. Each page stays on its node, so every track and message it
// receives from the other two crossed the relay.
func TestE2EThreePagesThroughRelay(t *testing.T) {
	requireBrowser(t)
	nodes := e2eCluster(t, false)
	r := newReports(t)
	names := []string{"p1", "p2", "p3"}
	var frames []string
	for i, n := range nodes {
		frames = append(frames, r.examplePage(n, names[i], "relay-room"))
	}
	r.open(frames...)
	waitMediaAndMessages(t, r, names)
	for i, n := range names {
		st := r.state(n)
		if st.URL != nodes[i].signaling || st.Redirects != 0 {
			t.Errorf("page %s connected to %s after %d redirects; want %s, no redirect (affinity off)", n, st.URL, st.Redirects, nodes[i].signaling)
		}
	}
	for _, n := range nodes {
		st := n.Relay().Stats()
		var c relay.ChannelStats
		for _, cs := range st.Channels {
			if cs.Channel == "relay-room" {
				c = cs
			}
		}
		if c.PacketsIn == 0 || c.PacketsOut == 0 || c.MessagesIn == 0 || c.MessagesOut == 0 {
			t.Errorf("%s relayed %d/%d packets and %d/%d messages in/out for relay-room; want all > 0",
				n.Name(), c.PacketsIn, c.PacketsOut, c.MessagesIn, c.MessagesOut)
		}
		if c := n.SFU().Counts().Channels["relay-room"]; c != 1 {
			t.Errorf("%s serves %d connections of relay-room, want 1", n.Name(), c)
		}
	}
}

// TestE2EAffinityGathers: affinity on, one page per node: the three end up
// on one node by redirect, and see and hear each other there.
func TestE2EAffinityGathers(t *testing.T) {
	requireBrowser(t)
	nodes := e2eCluster(t, true)
	r := newReports(t)
	names := []string{"a1", "a2", "a3"}
	// Pages that connect at the same instant to three empty nodes may each
	// create the session where they landed before the others' claims are
	// seen (placement ties go to the contacted node, and with relay on a
	// session may have several owners); that race is not what this test is
	// about, so each page starts once the one before it is connected.
	for i, n := range nodes {
		r.open(r.examplePage(n, names[i], "gather-room"))
		r.waitAll(60*time.Second, "page "+names[i]+" connected", names[i:i+1], func(st pageState) bool { return st.State == "connected" })
	}
	url0 := r.state(names[0]).URL
	redirects := 0
	for _, n := range names {
		st := r.state(n)
		if st.URL != url0 {
			t.Fatalf("pages on different nodes with affinity on: %s on %s, %s on %s", names[0], url0, n, st.URL)
		}
		redirects += st.Redirects
	}
	if redirects < 2 {
		t.Errorf("%d redirects in all; want at least 2 (two pages started on other nodes)", redirects)
	}
	var holder *e2eNode
	for _, n := range nodes {
		if n.signaling == url0 {
			holder = n
		}
	}
	if holder == nil {
		t.Fatalf("pages gathered on %s, which is no node's signaling URL", url0)
	}
	if c := holder.SFU().Counts().Channels["gather-room"]; c != 3 {
		t.Errorf("%s serves %d connections of gather-room, want 3", holder.Name(), c)
	}
	waitMediaAndMessages(t, r, names)
}

// soraSDKDir returns the directory holding the published sora-js-sdk's
// dist/sora.js: $SHOAL_SORA_JS_SDK, else ~/.cache/shoal/sora-js-sdk, where
// scripts/test.sh installs it with npm.
func soraSDKDir(t *testing.T) string {
	t.Helper()
	var cands []string
	if d := os.Getenv("SHOAL_SORA_JS_SDK"); d != "" {
		cands = append(cands, d)
	}
	if h, err := os.UserHomeDir(); err == nil {
		cands = append(cands, filepath.Join(h, ".cache", "shoal", "sora-js-sdk"))
	}
	for _, d := range cands {
		for _, p := range []string{filepath.Join(d, "node_modules", "sora-js-sdk"), d} {
			if _, err := os.Stat(filepath.Join(p, "dist", "sora.js")); err == nil {
				return p
			}
		}
	}
	msg := "sora-js-sdk is not installed; run: npm install --prefix ~/.cache/shoal/sora-js-sdk sora-js-sdk@2026.1.0"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// sdkPage is a page that loads the published SDK unchanged (./sora.js) and
// connects with all three signaling URLs; it reports like the example page.
// Query: dcs and idws ("1" or "0") set the SDK's dataChannelSignaling and
// ignoreDisconnectWebSocket options; cmd=1 polls /cmd?name= for "leave"
// (disconnect()); leave=ms disconnects that long after connect.
const sdkPage = `<!doctype html><body><script type="module">
import Sora from "./sora.js";
const q = new URLSearchParams(location.search);
const urls = q.get("signaling").split(","), role = q.get("role"), name = q.get("name");
const T = {name, state: "connecting", error: "", url: "", redirects: 0, connectionId: "", remotes: [], framesDecoded: {}, messages: [], connects: 0, log: []};
const trackStream = new Map();
let c;
(async () => {
  try {
    const conn = Sora.connection(urls);
    const opts = {multistream: true};
    if (q.get("dcs")) opts.dataChannelSignaling = q.get("dcs") === "1";
    if (q.get("idws")) opts.ignoreDisconnectWebSocket = q.get("idws") === "1";
    c = role === "recvonly" ? conn.recvonly(q.get("channel"), null, opts)
                            : conn.sendrecv(q.get("channel"), null, opts);
    c.on("switched", (m) => T.log.push("switched " + JSON.stringify(m)));
    // One callback per event (on replaces the last). Re-answers and the
    // timeline's data channel and connection states carry a time, to read
    // beside the nodes' log if the test fails.
    const at = () => new Date().toISOString().slice(11, 23);
    c.on("signaling", (e) => {
      if (/re-offer|switched|close|disconnect/.test(e.type)) T.log.push("signaling " + e.type + " " + e.transportType);
      else if (/re-answer/.test(e.type)) T.log.push("signaling " + e.type + " " + e.transportType + " at " + at());
    });
    c.on("timeline", (e) => { if (/datachannel|onopen|onclose|connectionstatechange/.test(e.type)) T.log.push("timeline " + e.type + " " + (e.dataChannelLabel || JSON.stringify(e.data || "")) + " at " + at()); });
    c.on("track", (e) => { const s = e.streams[0]; trackStream.set(e.track.id, s.id); if (!T.remotes.includes(s.id)) T.remotes.push(s.id); });
    c.on("notify", (m, via) => T.log.push("notify " + m.event_type + " " + (m.connection_id || "") + " " + via));
    c.on("push", (m, via) => { T.log.push("push " + JSON.stringify(m.data)); T.log.push("push via " + via); });
    c.on("disconnect", (e) => { T.state = "closed"; T.error = e.type + " " + e.title + " " + (e.code || ""); });
    const stream = role === "recvonly" ? undefined : await navigator.mediaDevices.getUserMedia({audio: true, video: {width: 320, height: 240}});
    await c.connect(stream);
    T.state = "connected"; T.connects++; T.url = c.connectedSignalingUrl; T.contact = c.contactSignalingUrl; T.redirects = T.contact === T.url ? 0 : 1; T.connectionId = c.connectionId;
    if (q.get("leave")) setTimeout(() => c.disconnect(), Number(q.get("leave")));
  } catch (e) { T.state = "error"; T.error = String(e && e.message || e); }
})();
setInterval(async () => {
  if (c && c.pc && T.state === "connected") {
    const fd = {};
    for (const r of c.pc.getReceivers()) {
      if (!r.track || r.track.kind !== "video") continue;
      const sid = trackStream.get(r.track.id); if (!sid) continue;
      (await r.getStats()).forEach((s) => { if (s.type === "inbound-rtp") fd[sid] = Math.max(fd[sid] || 0, s.framesDecoded || 0); });
    }
    T.framesDecoded = fd; T.remotes = c.remoteConnectionIds.slice();
    T.mlines = ((c.pc.currentRemoteDescription || {}).sdp || "").split("\r\nm=").length - 1;
  }
  T.ws = !!(c && c.ws && c.ws.readyState === 1);
  if (q.get("cmd") && c && T.state === "connected") {
    fetch("/cmd?name=" + name).then((r) => r.ok ? r.text() : "").then((t) => { if (t === "leave") c.disconnect(); }).catch(() => {});
  }
  fetch("/report", {method: "POST", body: JSON.stringify(T)}).catch(() => {});
}, 1000);
</script>`

// TestE2ESoraJSSDK: the published sora-js-sdk, unchanged, as two sendrecv
// clients and one recvonly client given all three signaling URLs (affinity
// on). The channel's session is held by the third node, whose signaling
// answers later than the others', so each client first reaches another node:
// each must be redirected where placement says (the session's node) and
// receive the others' media there. Then Sora's PushChannel API, sent to
// a node without the channel, is redirected (307) to the holder, and every
// SDK client gets the push through the SDK's own "push" callback.
func TestE2ESoraJSSDK(t *testing.T) {
	nodes, r := sdkCluster(t)
	holder := nodes[2]
	if _, err := holder.Membership().ClaimChannel(testutil.Context(t, 5*time.Second), "sdk-room"); err != nil {
		t.Fatalf("claim sdk-room on %s: %v", holder.Name(), err)
	}
	for _, n := range nodes {
		testutil.Eventually(t, func() bool {
			v := n.View()
			s, ok := v.Sessions["sdk-room"]
			return ok && len(s.Owners) == 1 && v.Nodes[s.Owners[0].Node].Name == holder.Name()
		}, 10*time.Second, "%s sees sdk-room held by %s", n.Name(), holder.Name())
	}
	holder.delay.Store(int64(400 * time.Millisecond))
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.signaling)
	}
	page := func(name, role string) string {
		return r.base + "/sdk.html?" + url.Values{"name": {name}, "role": {role}, "channel": {"sdk-room"}, "signaling": {strings.Join(urls, ",")}}.Encode()
	}
	r.open(page("s1", "sendrecv"), page("s2", "sendrecv"), page("r1", "recvonly"))
	names := []string{"s1", "s2", "r1"}
	r.waitAll(60*time.Second, "every SDK client connected", names, func(st pageState) bool { return st.State == "connected" })
	for _, n := range names {
		st := r.state(n)
		if st.URL != holder.signaling || st.Contact == holder.signaling || st.Contact == "" {
			t.Errorf("SDK client %s contacted %s and connected via %s; want a redirect from another node to %s (%s)",
				n, st.Contact, st.URL, holder.Name(), holder.signaling)
		}
	}
	if c := holder.SFU().Counts().Channels["sdk-room"]; c != 3 {
		t.Errorf("%s serves %d connections of sdk-room, want 3", holder.Name(), c)
	}
	s1, s2 := r.state("s1").ConnectionID, r.state("s2").ConnectionID
	r.waitAll(60*time.Second, "SDK clients decode each other's video", names, func(st pageState) bool {
		switch st.Name {
		case "s1":
			return sees(st, []string{s2}, 10)
		case "s2":
			return sees(st, []string{s1}, 10)
		default:
			return sees(st, []string{s1, s2}, 10)
		}
	})

	// Sora's push API, sent to a node that holds no part of the channel:
	// it answers 307 to the holder, which pushes to every SDK client.
	status, loc, _ := apiPost(t, &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		nodes[0].base+"/api", signaling.TargetPushChannel, `{"channel_id":"sdk-room","data":{"hello":"shoal"}}`)
	if status != http.StatusTemporaryRedirect || loc != holder.base+"/api" {
		t.Errorf("PushChannel at %s: %d Location %q, want 307 to %s/api", nodes[0].Name(), status, loc, holder.base)
	}
	status, _, body := apiPost(t, http.DefaultClient, nodes[0].base+"/api", signaling.TargetPushChannel, `{"channel_id":"sdk-room","data":{"hello":"shoal"}}`)
	if status != http.StatusOK {
		t.Errorf("PushChannel followed: %d %s", status, body)
	}
	r.waitAll(20*time.Second, "SDK clients got the push", names, func(st pageState) bool {
		return slices.Contains(st.Log, `push {"hello":"shoal"}`)
	})
}

// TestE2ESoraJSSDKDataChannelSignaling: the published sora-js-sdk with
// dataChannelSignaling and ignoreDisconnectWebSocket. Two pages switch
// ("switched" once their data channels are open) and close their
// WebSockets; their sessions outlive the sockets (and the server's ping
// interval). A third page joins later: the first two decode its video,
// the re-offers having come on the "signaling" data channel and the notify
// on "notify". Then the third page's disconnect() goes over the data
// channel and ends normally, and the first two see it leave; last, the API
// disconnects the second page, by close on its data channel.
func TestE2ESoraJSSDKDataChannelSignaling(t *testing.T) {
	nodes, r := sdkCluster(t)
	var leave sync.Map // page name → true: /cmd answers "leave"
	r.mux.HandleFunc("/cmd", func(w http.ResponseWriter, req *http.Request) {
		if _, ok := leave.Load(req.URL.Query().Get("name")); ok {
			io.WriteString(w, "leave")
		}
	})
	node := nodes[0]
	page := func(name string) string {
		return r.base + "/sdk.html?" + url.Values{"name": {name}, "role": {"sendrecv"}, "channel": {"dc-room"},
			"signaling": {node.signaling}, "dcs": {"1"}, "idws": {"1"}, "cmd": {"1"}}.Encode()
	}
	switched := func(st pageState) bool {
		return st.State == "connected" && !st.WS && slices.Contains(st.Log, `switched {"type":"switched","ignore_disconnect_websocket":true}`)
	}
	// One page after the other: two first connects of a new session at
	// once may each be sent to the most free node (placement.md), and the
	// checks below want both pages on this node.
	r.open(page("d1"))
	r.waitAll(60*time.Second, "the first page connected", []string{"d1"}, func(st pageState) bool { return st.State == "connected" })
	r.open(page("d2"))
	both := []string{"d1", "d2"}
	r.waitAll(60*time.Second, "both pages connected and switched, WebSocket closed", both, switched)
	d1, d2 := r.state("d1").ConnectionID, r.state("d2").ConnectionID
	r.waitAll(60*time.Second, "the pages decode each other's video", both, func(st pageState) bool {
		if st.Name == "d1" {
			return sees(st, []string{d2}, 10)
		}
		return sees(st, []string{d1}, 10)
	})
	// Past the server's ping interval (5 s): no ping may be written to the
	// closed sockets, and the sessions live on.
	time.Sleep(signaling.DefaultPingInterval + time.Second)
	for _, n := range both {
		if st := r.state(n); st.State != "connected" {
			t.Fatalf("page %s after its WebSocket closed: %s %s", n, st.State, st.Error)
		}
	}
	if got := len(node.Signaling().Connections("dc-room")); got != 2 {
		t.Fatalf("%s serves %d signaling sessions of dc-room without WebSockets, want 2", node.Name(), got)
	}

	// A third page joins: re-offers to the first two go over the data channel.
	r.open(page("d3"))
	r.waitAll(60*time.Second, "the third page connected and switched", []string{"d3"}, switched)
	d3 := r.state("d3").ConnectionID
	r.waitAll(60*time.Second, "the first two decode the third's video", both, func(st pageState) bool {
		return sees(st, []string{d3}, 10) &&
			slices.Contains(st.Log, "signaling onmessage-re-offer datachannel") &&
			slices.Contains(st.Log, "notify connection.created "+d3+" datachannel")
	})
	r.waitAll(30*time.Second, "the third decodes the first two", []string{"d3"}, func(st pageState) bool {
		return sees(st, []string{d1, d2}, 10)
	})

	// disconnect() after the switch goes over the data channel and ends as
	// the SDK's normal DISCONNECT once the server closed the data channels.
	leave.Store("d3", true)
	r.waitAll(30*time.Second, "the third page left", []string{"d3"}, func(st pageState) bool { return st.State == "closed" })
	if e := r.state("d3").Error; !strings.HasPrefix(e, "normal DISCONNECT") {
		t.Errorf("page d3's disconnect() ended with %q, want normal DISCONNECT", e)
	}
	r.waitAll(30*time.Second, "the first two see the third leave", both, func(st pageState) bool {
		return !slices.Contains(st.Remotes, d3) && slices.Contains(st.Log, "notify connection.destroyed "+d3+" datachannel")
	})
	testutil.Eventually(t, func() bool { return len(node.Signaling().Connections("dc-room")) == 2 }, 10*time.Second,
		"the third's session ended, the first two remain")
	for _, n := range both {
		if st := r.state(n); st.State != "connected" {
			t.Errorf("page %s: %s %s", n, st.State, st.Error)
		}
	}

	// The API disconnects a page without WebSocket: close on the signaling
	// data channel, which the SDK reports as a normal SHUTDOWN.
	if n, err := node.Signaling().DisconnectConnection("dc-room", d2, "BYE"); n != 1 || err != nil {
		t.Fatalf("DisconnectConnection: %d %v", n, err)
	}
	r.waitAll(30*time.Second, "the second page was disconnected", []string{"d2"}, func(st pageState) bool { return st.State == "closed" })
	if e := r.state("d2").Error; e != "normal SHUTDOWN 1000" {
		t.Errorf("page d2 disconnected by the API: %q, want normal SHUTDOWN 1000", e)
	}
	r.waitAll(30*time.Second, "the first page sees the second leave", []string{"d1"}, func(st pageState) bool {
		return !slices.Contains(st.Remotes, d2) && st.State == "connected"
	})
	testutil.Eventually(t, func() bool { return len(node.Signaling().Connections("dc-room")) == 1 }, 10*time.Second,
		"the second's session ended")
}

// sdkCluster is the set-up of the SDK tests: a browser and the published
// SDK are required; three nodes with affinity on (and mutate), and the
// test's server serving the SDK and sdkPage.
func sdkCluster(t *testing.T, mutate ...func(*shoal.Config)) ([]*e2eNode, *reports) {
	t.Helper()
	requireBrowser(t)
	dir := soraSDKDir(t)
	nodes := e2eCluster(t, true, mutate...)
	r := newReports(t)
	serveSDK(t, r, dir)
	return nodes, r
}

// serveSDK serves the published SDK (dir's dist/sora.js, unchanged) and
// sdkPage from the test's server.
func serveSDK(t *testing.T, r *reports, dir string) {
	t.Helper()
	sdk, err := os.ReadFile(filepath.Join(dir, "dist", "sora.js"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(sdk[:min(len(sdk), 300)]), "@version: 2026.") {
		t.Fatalf("%s is not a 2026 release of sora-js-sdk: %q", dir, sdk[:min(len(sdk), 300)])
	}
	r.mux.HandleFunc("/sora.js", func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		w.Write(sdk)
	})
	r.mux.HandleFunc("/sdk.html", func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, sdkPage)
	})
}

// TestE2EChromeReusesMLines: with sfu.ReuseAny, Chromium and the published
// sora-js-sdk take m-lines that two offers carried inactive (the case a
// pion answerer fails): a recvonly page watches two publishers come and
// leave, one after the other (so the first one's m-lines are inactive in
// both leave offers), then two more publishers; it must decode the later
// two on the reused m-lines, with an SDP that did not grow.
func TestE2EChromeReusesMLines(t *testing.T) {
	nodes, r := sdkCluster(t, func(c *shoal.Config) { c.SFU.MLineReuse = sfu.ReuseAny })
	page := func(name, role, leave string) string {
		v := url.Values{"name": {name}, "role": {role}, "channel": {"reuse-room"}, "signaling": {nodes[0].signaling}}
		if leave != "" {
			v.Set("leave", leave)
		}
		return r.base + "/sdk.html?" + v.Encode()
	}
	r.open(page("w", "recvonly", ""))
	r.waitAll(60*time.Second, "the watcher connected", []string{"w"}, func(st pageState) bool { return st.State == "connected" })

	// Two publishers that leave, 1.5 s apart, once the watcher decodes both.
	r.open(page("p1", "sendrecv", "8000"), page("p2", "sendrecv", "9500"))
	r.waitAll(60*time.Second, "publishers 1 and 2 connected", []string{"p1", "p2"}, func(st pageState) bool { return st.ConnectionID != "" })
	p1, p2 := r.state("p1").ConnectionID, r.state("p2").ConnectionID
	r.waitAll(30*time.Second, "the watcher decodes publishers 1 and 2", []string{"w"}, func(st pageState) bool { return sees(st, []string{p1, p2}, 10) })
	r.waitAll(30*time.Second, "publishers 1 and 2 left", []string{"p1", "p2"}, func(st pageState) bool { return st.State == "closed" })
	for _, n := range []string{"p1", "p2"} {
		// disconnect() ends as the SDK's normal DISCONNECT: the server closed
		// the WebSocket before the data channels.
		if e := r.state(n).Error; !strings.HasPrefix(e, "normal ") {
			t.Errorf("page %s's disconnect() ended with %q, want a normal one", n, e)
		}
	}
	var peak int
	r.waitAll(30*time.Second, "the watcher's SDP has their m-lines inactive", []string{"w"}, func(st pageState) bool {
		peak = st.MLines
		return len(st.Remotes) == 0 && st.MLines == 5 // 2 × (audio, video) + application
	})

	// Two more: their tracks must reuse the four inactive m-lines.
	r.open(page("p3", "sendrecv", ""), page("p4", "sendrecv", ""))
	r.waitAll(60*time.Second, "publishers 3 and 4 connected", []string{"p3", "p4"}, func(st pageState) bool { return st.ConnectionID != "" })
	p3, p4 := r.state("p3").ConnectionID, r.state("p4").ConnectionID
	r.waitAll(30*time.Second, "the watcher decodes publishers 3 and 4 on reused m-lines", []string{"w"}, func(st pageState) bool {
		return sees(st, []string{p3, p4}, 10)
	})
	if got := r.state("w").MLines; got != peak {
		t.Errorf("the watcher's SDP has %d m-lines after publishers 3 and 4 joined, want %d (reused)", got, peak)
	}
}

// TestE2ENodeProcessKilled runs the example as three node processes (one per
// process, as in a deployment), puts three pages in one channel with all
// three signaling URLs, then kills the process of the node serving them: the
// pages reconnect through the remaining URLs, and the two nodes left (the
// majority) serve them again, media and messages included.
func TestE2ENodeProcessKilled(t *testing.T) {
	requireBrowser(t)
	bin := filepath.Join(t.TempDir(), "minimal-cluster")
	build := exec.Command("go", "build", "-o", bin, "./examples/minimal-cluster")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the example: %v\n%s", err, out)
	}
	ips := testutil.LoopbackIPs(t, 3)
	httpPort := testutil.FreePort(t, ips[0])
	minPort := testutil.FreePort(t, ips[0])
	var names, urls, origins []string
	for i, ip := range ips {
		names = append(names, fmt.Sprintf("k%d@%v", i+1, ip))
		origins = append(origins, netip.AddrPortFrom(ip, uint16(httpPort)).String())
		urls = append(urls, fmt.Sprintf("ws://%v/signaling", netip.AddrPortFrom(ip, uint16(httpPort))))
	}
	procs := make([]*exec.Cmd, 3)
	for i := range ips {
		args := []string{"-name", names[i], "-key", fmt.Sprintf("%x", e2eKey), "-http-port", fmt.Sprint(httpPort),
			"-cluster-min-port", fmt.Sprint(minPort), "-cluster-max-port", fmt.Sprint(minPort + 3),
			"-data", t.TempDir(), "-fast", "-loopback", "-log", "warn", "-origins", strings.Join(origins, ",")}
		if i == 0 {
			args = append(args, "-init", strings.Join(names, ","))
		}
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = testWriter{t, names[i]}, testWriter{t, names[i]}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs[i] = cmd
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				cmd.Process.Signal(syscall.SIGTERM)
				done := make(chan struct{})
				go func() { cmd.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					cmd.Process.Kill()
					<-done
				}
			}
		})
	}
	// Wait for the cluster: node 1's admin API lists three connected nodes.
	testutil.Eventually(t, func() bool {
		nodes, err := testutil.ClusterNodes(fmt.Sprintf("http://%v/api", netip.AddrPortFrom(ips[0], uint16(httpPort))))
		return err == nil && len(nodes) == 3 && !slices.Contains(slices.Collect(maps.Values(nodes)), false)
	}, 45*time.Second, "three node processes in one cluster")

	r := newReports(t)
	pnames := []string{"k-p1", "k-p2", "k-p3"}
	for i, n := range pnames {
		// Each page is served by a different node but is given every URL;
		// each starts once the one before it is connected, so that affinity
		// gathers them (see TestE2EAffinityGathers).
		page := &e2eNode{base: fmt.Sprintf("http://%v", netip.AddrPortFrom(ips[i], uint16(httpPort)))}
		r.open(r.examplePage(page, n, "kill-room", urls...))
		r.waitAll(60*time.Second, "page "+n+" connected", pnames[i:i+1], func(st pageState) bool { return st.State == "connected" })
	}
	waitMediaAndMessages(t, r, pnames)

	// Kill the node serving the first page (with affinity on, all of them).
	victim := slices.Index(urls, r.state(pnames[0]).URL)
	if victim < 0 {
		t.Fatalf("page connected via %q, not one of %v", r.state(pnames[0]).URL, urls)
	}
	before := map[string]int{}
	for _, n := range pnames {
		before[n] = r.state(n).Connects
	}
	t.Logf("killing %s", names[victim])
	syscall.Kill(-procs[victim].Process.Pid, syscall.SIGKILL)
	procs[victim].Wait()

	var onVictim []string
	for _, n := range pnames {
		if r.state(n).URL == urls[victim] {
			onVictim = append(onVictim, n)
		}
	}
	r.waitAll(60*time.Second, "the victim's pages reconnected to a surviving node", onVictim, func(st pageState) bool {
		return st.State == "connected" && st.Connects > before[st.Name] && st.URL != urls[victim]
	})
	waitMediaAndMessages(t, r, pnames)
	// The majority keeps serving: a surviving node lists the dead one as
	// not connected, and itself as connected.
	alive := (victim + 1) % 3
	nodes, err := testutil.ClusterNodes(fmt.Sprintf("http://%v/api", netip.AddrPortFrom(ips[alive], uint16(httpPort))))
	if err != nil {
		t.Fatal(err)
	}
	for name, connected := range nodes {
		if want := name != names[victim]; connected != want {
			t.Errorf("after the kill, %s connected=%v; want %v", name, connected, want)
		}
	}
}

// testWriter sends a child process's output to t.Log, line by line.
type testWriter struct {
	t    *testing.T
	name string
}

func (w testWriter) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.t.Logf("[%s] %s", w.name, l)
	}
	return len(p), nil
}
