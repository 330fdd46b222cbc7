package shoal_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/signaling"
)

// simulcastPage loads the published SDK unchanged and publishes
// (role=sendonly: simulcast:true, VP8, a 1280x720 camera) or receives
// (role=recvonly, simulcastRid=rid). Besides the usual report it POSTs its
// video RTP stats to /simreport every second: per outbound rid, and per
// inbound stream.
const simulcastPage = `<!doctype html><body><script type="module">
import Sora from "./sora.js";
const q = new URLSearchParams(location.search);
const role = q.get("role"), name = q.get("name");
const T = {name, state: "connecting", error: "", connectionId: "", remotes: [], framesDecoded: {}, log: []};
const S = {name, out: {}, in: {}};
let c;
(async () => {
  try {
    const conn = Sora.connection(q.get("signaling").split(","));
    const opts = {multistream: true, audio: false};
    if (role === "sendonly") { opts.simulcast = true; opts.videoCodecType = "VP8"; }
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
    (await c.pc.getStats()).forEach((s) => {
      if (s.kind !== "video") return;
      if (s.type === "outbound-rtp") S.out[s.rid || "-"] = {bytes: s.bytesSent || 0, frames: s.framesEncoded || 0, width: s.frameWidth || 0, height: s.frameHeight || 0, limit: s.qualityLimitationReason || ""};
      if (s.type === "inbound-rtp") S.in[String(s.ssrc)] = {frames: s.framesDecoded || 0, width: s.frameWidth || 0, height: s.frameHeight || 0};
    });
  }
  fetch("/report", {method: "POST", body: JSON.stringify(T)}).catch(() => {});
  fetch("/simreport", {method: "POST", body: JSON.stringify(S)}).catch(() => {});
}, 1000);
</script>`

// rtpStats is one video RTP stream as a simulcastPage reports it.
type rtpStats struct {
	Bytes  int    `json:"bytes"`
	Frames int    `json:"frames"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
	Limit  string `json:"limit"`
}

type simReport struct {
	Name string              `json:"name"`
	Out  map[string]rtpStats `json:"out"`
	In   map[string]rtpStats `json:"in"`
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
	node := nodes[0]
	page := func(name, role, rid string) string {
		v := url.Values{"name": {name}, "role": {role}, "channel": {"sim-room"}, "signaling": {node.signaling}}
		if rid != "" {
			v.Set("rid", rid)
		}
		return r.base + "/simulcast.html?" + v.Encode()
	}
	r.open(page("pub", "sendonly", ""))
	r.waitAll(60*time.Second, "the publisher connected", []string{"pub"}, func(st pageState) bool { return st.State == "connected" })
	start := time.Now()
	defer func() {
		if t.Failed() {
			for _, n := range []string{"pub", "lo", "hi"} {
				t.Logf("last stats of %s: %+v", n, sims.get(n))
			}
		}
	}()
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
