package shoal_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/signaling"
)

// simulcastPage loads the published SDK unchanged and publishes
// (role=sendonly: simulcast:true, VP8 or the vcodec parameter's codec, a
// 1280x720 camera) or receives
// (role=recvonly, simulcastRid=rid). Besides the usual report it POSTs its
// video RTP stats to /simreport every second: per outbound rid (bytes with
// the RTP headers), and per inbound stream.
const simulcastPage = `<!doctype html><body><script type="module">
import Sora from "./sora.js";
const q = new URLSearchParams(location.search);
const role = q.get("role"), name = q.get("name");
const T = {name, state: "connecting", error: "", connectionId: "", remotes: [], framesDecoded: {}, log: []};
const S = {name, out: {}, in: {}, gaps: [], stall: 0};
let c;
(async () => {
  try {
    const conn = Sora.connection(q.get("signaling").split(","));
    const opts = {multistream: true, audio: false};
    if (role === "sendonly") { opts.simulcast = true; opts.videoCodecType = q.get("vcodec") || "VP8"; }
    if (q.get("rid")) opts.simulcastRid = q.get("rid");
    c = role === "recvonly" ? conn.recvonly(q.get("channel"), null, opts) : conn.sendonly(q.get("channel"), null, opts);
    c.on("notify", (m) => {
      if (m.event_type === "simulcast.switched") T.log.push("switched " + m.previous_rid + ">" + m.current_rid + " " + m.trigger + " " + m.sender_connection_id);
    });
    c.on("track", (e) => { const s = e.streams[0]; if (!T.remotes.includes(s.id)) T.remotes.push(s.id); });
    c.on("disconnect", (e) => { T.state = "closed"; T.error = e.type + " " + e.title + " " + (e.code || ""); });
    const stream = role === "recvonly" ? undefined : await navigator.mediaDevices.getUserMedia({audio: false, video: {width: 1280, height: 720, frameRate: 30}});
    await c.connect(stream);
    T.state = "connected"; T.connectionId = c.connectionId;
  } catch (e) { T.state = "error"; T.error = String(e && e.message || e); }
})();
setInterval(async () => {
  if (c && c.pc && T.state === "connected") {
    const st = await c.pc.getStats();
    st.forEach((s) => {
      if (s.kind !== "video") return;
      const codec = (st.get(s.codecId) || {}).mimeType || "";
      if (s.type === "outbound-rtp") S.out[s.rid || "-"] = {bytes: (s.bytesSent || 0) + (s.headerBytesSent || 0), frames: s.framesEncoded || 0, width: s.frameWidth || 0, height: s.frameHeight || 0, limit: s.qualityLimitationReason || "", mode: s.scalabilityMode || "", codec};
      if (s.type === "inbound-rtp") S.in[String(s.ssrc)] = {frames: s.framesDecoded || 0, width: s.frameWidth || 0, height: s.frameHeight || 0, codec};
    });
  }
  fetch("/report", {method: "POST", body: JSON.stringify(T)}).catch(() => {});
  fetch("/simreport", {method: "POST", body: JSON.stringify(S)}).catch(() => {});
}, 1000);
// A receiver notes every stretch of 300 ms or more without a frame decoded
// (when it ended, how long), and how long it has gone without one now,
// sampled every 50 ms.
let lastFrames = -1, lastAt = 0;
setInterval(async () => {
  if (role !== "recvonly" || !c || !c.pc || T.state !== "connected") return;
  for (const r of c.pc.getReceivers()) {
    if (r.track.kind !== "video") continue;
    (await r.getStats()).forEach((s) => {
      if (s.type !== "inbound-rtp") return;
      const now = Date.now(), f = s.framesDecoded || 0;
      if (f === lastFrames) { S.stall = now - lastAt; return; }
      if (lastFrames >= 0 && now - lastAt >= 300 && S.gaps.length < 200) S.gaps.push([now, now - lastAt]);
      lastFrames = f; lastAt = now; S.stall = 0;
    });
  }
}, 50);
</script>`

// rtpStats is one video RTP stream as a simulcastPage reports it.
type rtpStats struct {
	Bytes  int    `json:"bytes"`
	Frames int    `json:"frames"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
	Limit  string `json:"limit"`
	Mode   string `json:"mode"`  // outbound: the scalability mode (L1T3: three temporal layers)
	Codec  string `json:"codec"` // its codec's mimeType
}

type simReport struct {
	Name string              `json:"name"`
	Out  map[string]rtpStats `json:"out"`
	In   map[string]rtpStats `json:"in"`
	// Gaps are a receiver's stretches of 300 ms or more without a frame
	// decoded: when each ended (Unix ms) and how long it was (ms).
	Gaps [][2]int64 `json:"gaps"`
	// Stall is how long it has gone without a frame decoded (ms).
	Stall int64 `json:"stall"`
}

// longestGap returns the longest stretch without a frame decoded that
// ended after from, or is still going on, in the report r.
func (r simReport) longestGap(from time.Time) time.Duration {
	most := time.Duration(r.Stall) * time.Millisecond
	for _, g := range r.Gaps {
		if end := time.UnixMilli(g[0]); end.After(from) {
			most = max(most, min(time.Duration(g[1])*time.Millisecond, end.Sub(from)))
		}
	}
	return most
}

// simReports keeps the pages' last /simreport.
type simReports struct {
	mu sync.Mutex
	m  map[string]simReport
}

func (s *simReports) get(name string) simReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[name]
}

// inbound is the decoded stream a receiving page reports, with the most
// frames decoded.
func (r simReport) inbound() rtpStats {
	var best rtpStats
	for _, s := range r.In {
		if s.Frames >= best.Frames {
			best = s
		}
	}
	return best
}

// TestE2ESimulcastSoraJSSDK: the published sora-js-sdk publishes with
// simulcast: true, so its outbound stats show the three rids sending; a
// recvonly page with simulcastRid r0 decodes a smaller frame than one with
// r2; then Sora's RequestSimulcastRid API moves the r0 page to r2: the
// SDK gets the simulcast.switched notify and the page decodes the larger
// frame.
func TestE2ESimulcastSoraJSSDK(t *testing.T) {
	nodes, r := sdkCluster(t)
	sims := serveSimulcast(t, r)
	node := nodes[0]
	page := func(name, role, rid string) string { return simulcastURL(r, node, name, role, rid) }
	simulcastPublisher(t, r, sims, page("pub", "sendonly", ""))

	r.open(page("lo", "recvonly", "r0"), page("hi", "recvonly", "r2"))
	r.waitAll(60*time.Second, "the receivers connected", []string{"lo", "hi"}, func(st pageState) bool { return st.State == "connected" })
	pub := r.state("pub").ConnectionID
	testutil.Eventually(t, func() bool {
		lo, hi := sims.get("lo").inbound(), sims.get("hi").inbound()
		return lo.Frames > 30 && hi.Frames > 30 && lo.Height > 0 && lo.Height < hi.Height
	}, 60*time.Second, "r0 decodes a smaller frame than r2")
	lo, hi := sims.get("lo").inbound(), sims.get("hi").inbound()
	// hi gets r2 unless the publisher's bandwidth estimate holds r2 back
	// (it falls back to r1 then), as under the race detector.
	t.Logf("decoded: simulcastRid r0 %dx%d, r2 %dx%d (publisher's r2: %dx%d, limited by %q)", lo.Width, lo.Height, hi.Width, hi.Height,
		sims.get("pub").Out["r2"].Width, sims.get("pub").Out["r2"].Height, sims.get("pub").Out["r2"].Limit)

	// Sora's admin API moves lo to r2.
	body := fmt.Sprintf(`{"channel_id":"sim-room","receiver_connection_id":%q,"sender_connection_id":%q,"rid":"r2"}`, r.state("lo").ConnectionID, pub)
	status, _, resp := apiPost(t, http.DefaultClient, node.base+"/api", signaling.TargetRequestSimulcastRid, body)
	if status != http.StatusOK {
		t.Fatalf("RequestSimulcastRid: %d %s", status, resp)
	}
	switched := time.Now()
	// The switch goes to r2, or to r1 while the publisher's bandwidth holds
	// r2 back (then on to r2 when it comes, a switch triggered by the sender).
	r.waitAll(30*time.Second, "lo gets simulcast.switched", []string{"lo"}, func(st pageState) bool {
		return slices.Contains(st.Log, "switched r0>r2 receiver "+pub) || slices.Contains(st.Log, "switched r0>r1 receiver "+pub)
	})
	testutil.Eventually(t, func() bool {
		return sims.get("lo").inbound().Height == sims.get("hi").inbound().Height
	}, 30*time.Second, "lo decodes r2's frame size")
	lo = sims.get("lo").inbound()
	t.Logf("after RequestSimulcastRid r2 (%v): lo decodes %dx%d, %d frames; its notifies: %q", time.Since(switched).Round(100*time.Millisecond),
		lo.Width, lo.Height, lo.Frames, r.state("lo").Log)
	frames := lo.Frames
	testutil.Eventually(t, func() bool { return sims.get("lo").inbound().Frames > frames+30 }, 10*time.Second, "lo keeps decoding")
}

// serveSimulcast serves simulcastPage and keeps its reports; the test
// logs the last ones if it fails.
func serveSimulcast(t *testing.T, r *reports) *simReports {
	sims := &simReports{m: map[string]simReport{}}
	r.mux.HandleFunc("/simreport", func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		var s simReport
		if json.Unmarshal(b, &s) == nil {
			sims.mu.Lock()
			sims.m[s.Name] = s
			sims.mu.Unlock()
		}
	})
	r.mux.HandleFunc("/simulcast.html", func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, simulcastPage)
	})
	t.Cleanup(func() {
		if t.Failed() {
			sims.mu.Lock()
			defer sims.mu.Unlock()
			for n, s := range sims.m {
				t.Logf("last stats of %s: %+v", n, s)
			}
		}
	})
	return sims
}

// simulcastURL is the URL of a simulcastPage on node's signaling. The
// publisher's codec is VP8, or SHOAL_E2E_SIMULCAST_CODEC's (VP9, H264,
// AV1): with it, every simulcast test runs with that codec.
func simulcastURL(r *reports, node *e2eNode, name, role, rid string) string {
	v := url.Values{"name": {name}, "role": {role}, "channel": {"sim-room"}, "signaling": {node.signaling}}
	if rid != "" {
		v.Set("rid", rid)
	}
	if c := os.Getenv("SHOAL_E2E_SIMULCAST_CODEC"); c != "" {
		v.Set("vcodec", c)
	}
	return r.base + "/simulcast.html?" + v.Encode()
}

// simulcastPublisher opens the publisher's page ("pub") and waits until it
// sends three rids.
func simulcastPublisher(t *testing.T, r *reports, sims *simReports, page string) {
	t.Helper()
	r.open(page)
	r.waitAll(60*time.Second, "the publisher connected", []string{"pub"}, func(st pageState) bool { return st.State == "connected" })
	start := time.Now()
	testutil.Eventually(t, func() bool {
		out := sims.get("pub").Out
		for _, rid := range []string{"r0", "r1", "r2"} {
			if out[rid].Frames < 30 || out[rid].Bytes == 0 {
				return false
			}
		}
		return true
	}, 60*time.Second, "the publisher sends three rids")
	out := sims.get("pub").Out
	t.Logf("publisher's outbound after %v: r0 %dx%d (%d frames), r1 %dx%d (%d), r2 %dx%d (%d)", time.Since(start).Round(time.Second),
		out["r0"].Width, out["r0"].Height, out["r0"].Frames, out["r1"].Width, out["r1"].Height, out["r1"].Frames,
		out["r2"].Width, out["r2"].Height, out["r2"].Frames)
}

// rates measures, over d, the publisher's sending rate per rid and what
// node's relay received for sim-room, in kbit/s.
func rates(t *testing.T, sims *simReports, node *e2eNode, d time.Duration) (rid map[string]float64, relayed float64) {
	t.Helper()
	in := func() uint64 {
		for _, c := range node.Relay().Stats().Channels {
			if c.Channel == "sim-room" {
				return c.BytesIn
			}
		}
		return 0
	}
	out0, in0, t0 := sims.get("pub").Out, in(), time.Now()
	time.Sleep(d)
	out1, in1 := sims.get("pub").Out, in()
	secs := time.Since(t0).Seconds()
	rid = map[string]float64{}
	for _, r := range []string{"r0", "r1", "r2"} {
		rid[r] = float64(out1[r].Bytes-out0[r].Bytes) * 8 / 1000 / secs
	}
	return rid, float64(in1-in0) * 8 / 1000 / secs
}

// TestE2ESimulcastThroughRelay: the publisher on one node, receivers on
// another (affinity off, so each stays where it connected): every layer
// crosses the relay as a track of its own, and only the layers the
// receivers there want cross. With one r0 receiver only r0 crosses; with an
// r2 receiver added, r0 and r2; each decodes its own frame size.
func TestE2ESimulcastThroughRelay(t *testing.T) {
	requireBrowser(t)
	dir := soraSDKDir(t)
	nodes := e2eCluster(t, false)
	r := newReports(t)
	serveSDK(t, r, dir)
	sims := serveSimulcast(t, r)
	a, b := nodes[0], nodes[1]
	simulcastPublisher(t, r, sims, simulcastURL(r, a, "pub", "sendonly", ""))

	r.open(simulcastURL(r, b, "lo", "recvonly", "r0"))
	r.waitAll(60*time.Second, "lo connected", []string{"lo"}, func(st pageState) bool { return st.State == "connected" })
	testutil.Eventually(t, func() bool { return sims.get("lo").inbound().Frames > 30 }, 60*time.Second, "lo decodes through the relay")
	time.Sleep(2 * time.Second) // the start's other layers leave the window
	rid, relayed := rates(t, sims, b, 3*time.Second)
	t.Logf("lo (r0) on %s decodes %dx%d; publisher sends r0 %.0f, r1 %.0f, r2 %.0f kbit/s; the relay brings %.0f kbit/s to %s",
		b.Name(), sims.get("lo").inbound().Width, sims.get("lo").inbound().Height, rid["r0"], rid["r1"], rid["r2"], relayed, b.Name())
	if relayed > rid["r0"]+rid["r1"]/2 {
		t.Errorf("with one r0 receiver the relay brings %.0f kbit/s: more than r0 (%.0f) crosses", relayed, rid["r0"])
	}

	r.open(simulcastURL(r, b, "hi", "recvonly", "r2"))
	r.waitAll(60*time.Second, "hi connected", []string{"hi"}, func(st pageState) bool { return st.State == "connected" })
	testutil.Eventually(t, func() bool {
		lo, hi := sims.get("lo").inbound(), sims.get("hi").inbound()
		return hi.Frames > 30 && lo.Height > 0 && lo.Height < hi.Height
	}, 60*time.Second, "through the relay, r0 decodes a smaller frame than r2")
	lo, hi := sims.get("lo").inbound(), sims.get("hi").inbound()
	time.Sleep(2 * time.Second)
	rid, relayed = rates(t, sims, b, 3*time.Second)
	t.Logf("through the relay: r0 receiver decodes %dx%d, r2 receiver %dx%d; publisher sends r0 %.0f, r1 %.0f, r2 %.0f kbit/s; the relay brings %.0f kbit/s",
		lo.Width, lo.Height, hi.Width, hi.Height, rid["r0"], rid["r1"], rid["r2"], relayed)
	if hi.Height == sims.get("pub").Out["r2"].Height && relayed > rid["r0"]+rid["r2"]+rid["r1"]/2 {
		t.Errorf("with r0 and r2 receivers the relay brings %.0f kbit/s: r1 (%.0f) crosses too", relayed, rid["r1"])
	}
}
