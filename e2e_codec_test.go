package shoal_test

import (
	"io"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"
)

// codecPage is a page that loads the published SDK unchanged and connects
// one signaling URL as sendonly (with the SDK's videoCodecType option from
// the vcodec query parameter) or recvonly. Every second it reports, in its
// log, the codec of each video it sends ("send video/VP9") and receives
// ("recv <connection id> video/VP9"), from getStats.
const codecPage = `<!doctype html><body><script type="module">
import Sora from "./sora.js";
const q = new URLSearchParams(location.search);
const name = q.get("name"), role = q.get("role");
const T = {name, state: "connecting", error: "", url: "", redirects: 0, connectionId: "", remotes: [], framesDecoded: {}, messages: [], connects: 0, log: []};
const trackStream = new Map();
let c;
(async () => {
  try {
    const opts = {multistream: true};
    if (q.get("vcodec")) opts.videoCodecType = q.get("vcodec");
    const conn = Sora.connection([q.get("signaling")]);
    c = role === "recvonly" ? conn.recvonly(q.get("channel"), null, opts) : conn.sendonly(q.get("channel"), null, opts);
    c.on("track", (e) => { const s = e.streams[0]; trackStream.set(e.track.id, s.id); });
    c.on("disconnect", (e) => { T.state = "closed"; T.error = e.type + " " + e.title + " " + (e.code || ""); });
    const stream = role === "recvonly" ? undefined : await navigator.mediaDevices.getUserMedia({audio: true, video: {width: 320, height: 240}});
    await c.connect(stream);
    T.state = "connected"; T.connects++; T.url = c.connectedSignalingUrl; T.connectionId = c.connectionId;
  } catch (e) { T.state = "error"; T.error = String(e && e.message || e); }
})();
setInterval(async () => {
  if (c && c.pc && T.state === "connected") {
    const fd = {}, log = [];
    for (const r of c.pc.getReceivers()) {
      if (!r.track || r.track.kind !== "video") continue;
      const sid = trackStream.get(r.track.id); if (!sid) continue;
      const st = await r.getStats();
      st.forEach((s) => {
        if (s.type !== "inbound-rtp") return;
        fd[sid] = Math.max(fd[sid] || 0, s.framesDecoded || 0);
        const k = st.get(s.codecId); if (k) log.push("recv " + sid + " " + k.mimeType);
      });
    }
    for (const s of c.pc.getSenders()) {
      if (!s.track || s.track.kind !== "video") continue;
      const st = await s.getStats();
      st.forEach((x) => { if (x.type === "outbound-rtp") { const k = st.get(x.codecId); if (k) log.push("send " + k.mimeType); } });
    }
    T.framesDecoded = fd; T.log = log; T.remotes = c.remoteConnectionIds.slice();
  }
  fetch("/report", {method: "POST", body: JSON.stringify(T)}).catch(() => {});
}, 1000);
</script>`

// TestE2ESoraJSSDKVideoCodec: the published sora-js-sdk publishes with
// videoCodecType VP9, H264 and AV1 (affinity off, one channel per codec):
// the publisher's outbound video is that codec, and recvonly pages on the
// same node and on another node (through the relay) decode it, their
// inbound codec being that codec.
func TestE2ESoraJSSDKVideoCodec(t *testing.T) {
	requireBrowser(t)
	dir := soraSDKDir(t)
	nodes := e2eCluster(t, false)
	r := newReports(t)
	serveSDK(t, r, dir)
	r.mux.HandleFunc("/codec.html", func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, codecPage)
	})
	page := func(node *e2eNode, name, role, channel, codec string) string {
		v := url.Values{"name": {name}, "role": {role}, "channel": {channel}, "signaling": {node.signaling}}
		if codec != "" {
			v.Set("vcodec", codec)
		}
		return r.base + "/codec.html?" + v.Encode()
	}
	codecs := []string{"VP9", "H264", "AV1"}
	var frames, pubs []string
	for _, c := range codecs {
		frames = append(frames, page(nodes[0], "pub-"+c, "sendonly", "codec-"+c, c))
		pubs = append(pubs, "pub-"+c)
	}
	r.open(frames...)
	r.waitAll(60*time.Second, "publishers connected", pubs, func(st pageState) bool { return st.State == "connected" })
	frames = nil
	for _, c := range codecs {
		frames = append(frames, page(nodes[0], "local-"+c, "recvonly", "codec-"+c, ""), page(nodes[1], "remote-"+c, "recvonly", "codec-"+c, ""))
	}
	r.open(frames...)
	for _, c := range codecs {
		mime := "video/" + c
		pub := r.state("pub-" + c).ConnectionID
		r.waitAll(60*time.Second, "the publisher sends "+mime, []string{"pub-" + c}, func(st pageState) bool {
			return slices.Contains(st.Log, "send "+mime)
		})
		r.waitAll(60*time.Second, "both subscribers decode "+mime, []string{"local-" + c, "remote-" + c}, func(st pageState) bool {
			return sees(st, []string{pub}, 10) && slices.Contains(st.Log, "recv "+pub+" "+mime)
		})
	}
	for _, c := range codecs {
		if st := r.state("remote-" + c); st.URL != nodes[1].signaling {
			t.Errorf("page remote-%s connected via %s, want %s (through the relay)", c, st.URL, nodes[1].signaling)
		}
		if st := r.state("local-" + c); st.URL != nodes[0].signaling {
			t.Errorf("page local-%s connected via %s, want %s", c, st.URL, nodes[0].signaling)
		}
	}
}
