// shoal.js: a small browser client of Shoal's signaling, written to the
// protocol as docs/signaling.md describes it (the one Sora's SDKs speak). No
// build step, no dependency.
//
// The server is the offerer: the client sends `connect`, answers `offer` and
// every `re-offer`, follows `redirect`, answers `ping`, and receives media
// whose a=msid stream id is the sending connection's id. Messages travel on
// the "#chat" data channel, which the server opens.
//
//   const c = await connect({urls: ["ws://127.0.0.1:8001/signaling"], channelId: "room",
//     role: "sendrecv", stream, onTrack, onRemoveStream, onMessage, onNotify, onClose});
//   c.send("hello"); c.close();

const CHAT = "#chat";

// open opens every URL at once and keeps the first that opens, like the SDK
// (each has `timeout` ms to open); the others are closed.
function openFirst(urls, timeout) {
  return new Promise((resolve, reject) => {
    let winner = null, failed = 0;
    const fail = () => { if (++failed === urls.length && !winner) reject(new Error("all signaling URLs failed: " + urls.join(", "))); };
    for (const url of urls) {
      let ws;
      try { ws = new WebSocket(url); } catch (e) { fail(); continue; }
      ws.binaryType = "arraybuffer";
      const timer = setTimeout(() => { if (!winner) { ws.close(); } }, timeout);
      ws.onopen = () => {
        clearTimeout(timer);
        if (winner) { ws.close(); return; }
        winner = ws; ws.onclose = null; ws.onerror = null;
        resolve({ws, url});
      };
      ws.onerror = () => {};
      ws.onclose = () => { clearTimeout(timer); fail(); };
    }
  });
}

// capabilityOffer makes the throw-away offer `connect` carries, as the SDK.
async function capabilityOffer() {
  const pc = new RTCPeerConnection();
  pc.addTransceiver("audio", {direction: "recvonly"});
  pc.addTransceiver("video", {direction: "recvonly"});
  const o = await pc.createOffer();
  pc.close();
  return o.sdp;
}

export async function connect(opts) {
  const urls = opts.urls;
  const role = opts.role || "sendrecv";
  const cb = Object.assign({onTrack() {}, onRemoveStream() {}, onMessage() {}, onNotify() {}, onClose() {}, onLog() {}}, opts);
  const state = {url: "", redirects: 0, connectionId: "", pc: null, ws: null, dcs: {}, mids: {}, closed: false, chain: Promise.resolve()};
  let {ws, url} = await openFirst(urls, opts.timeout || 3000);
  let redirect = false;

  for (;;) {
    state.url = url; state.ws = ws;
    const connectMsg = {type: "connect", role, channel_id: opts.channelId, sdp: await capabilityOffer(),
      audio: role !== "recvonly", video: role !== "recvonly", metadata: opts.metadata === undefined ? null : opts.metadata,
      data_channels: [{label: CHAT, direction: "sendrecv"}]};
    if (opts.clientId) connectMsg.client_id = opts.clientId;
    if (redirect) connectMsg.redirect = true;
    const next = await new Promise((resolve, reject) => {
      ws.onclose = (e) => reject(Object.assign(new Error(`signaling closed before offer: ${e.code} ${e.reason}`), {code: e.code, reason: e.reason}));
      ws.onmessage = async (e) => {
        let m;
        try { m = JSON.parse(e.data); } catch (err) { reject(err); return; }
        if (m.type === "redirect") {
          ws.onclose = null; ws.onmessage = null; ws.close();
          resolve({redirect: m.location});
        } else if (m.type === "offer") {
          ws.onmessage = null;
          resolve({offer: m});
        } else if (m.type === "ping") {
          ws.send(JSON.stringify({type: "pong"}));
        }
      };
      ws.send(JSON.stringify(connectMsg));
    });
    if (next.redirect) {
      state.redirects++;
      cb.onLog("redirected to " + next.redirect);
      url = next.redirect; redirect = true;
      ws = await new Promise((resolve, reject) => {
        const w = new WebSocket(url);
        w.binaryType = "arraybuffer";
        w.onopen = () => resolve(w);
        w.onclose = (e) => reject(new Error(`redirect target ${url} closed: ${e.code} ${e.reason}`));
      });
      continue;
    }
    await answerOffer(state, next.offer, opts.stream, cb);
    return makeConn(state, cb);
  }
}

function sendSignaling(state, msg) {
  const dc = state.dcs["signaling"];
  if (dc && dc.readyState === "open") dc.send(JSON.stringify(msg));
  else if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(msg));
}

// answer creates the answer, turning the upstream mids sendrecv as the SDK does.
async function answer(state, sdp) {
  await state.pc.setRemoteDescription({type: "offer", sdp});
  for (const t of state.pc.getTransceivers()) {
    if ((t.mid === state.mids.audio || t.mid === state.mids.video) && t.direction === "recvonly") t.direction = "sendrecv";
  }
  const a = await state.pc.createAnswer();
  await state.pc.setLocalDescription(a);
  return a.sdp;
}

// One re-offer at a time: the server sends the next after our re-answer, but
// chain them anyway so that two never interleave.
function onReOffer(state, sdp) {
  state.chain = state.chain.then(async () => {
    if (state.closed) return;
    const a = await answer(state, sdp);
    sendSignaling(state, {type: "re-answer", sdp: a});
  }).catch((e) => console.error("re-offer", e));
}

async function answerOffer(state, offer, stream, cb) {
  state.connectionId = offer.connection_id;
  state.mids = offer.mid || {};
  const pc = new RTCPeerConnection(offer.config || {});
  state.pc = pc;
  const streamOfTrack = new Map();
  pc.ontrack = (e) => {
    const s = e.streams[0];
    if (!s || s.id === "default" || s.id === state.connectionId) return;
    streamOfTrack.set(e.track.id, s.id);
    s.onremovetrack = () => { if (s.getTracks().length === 0) cb.onRemoveStream(s.id); };
    cb.onTrack(e.track, s);
  };
  state.streamOfTrack = streamOfTrack;
  pc.ondatachannel = (e) => {
    const dc = e.channel;
    dc.binaryType = "arraybuffer";
    state.dcs[dc.label] = dc;
    dc.onmessage = (m) => {
      const text = typeof m.data === "string" ? m.data : new TextDecoder().decode(m.data);
      if (dc.label === CHAT) { cb.onMessage(text); return; }
      let msg; try { msg = JSON.parse(text); } catch { return; }
      if (dc.label === "signaling" && msg.type === "re-offer") onReOffer(state, msg.sdp);
      else if (dc.label === "signaling" && msg.type === "close") close(state, cb, {code: msg.code, reason: msg.reason});
      else if (dc.label === "notify") cb.onNotify(msg);
    };
  };
  pc.onicecandidate = (e) => {
    if (e.candidate && e.candidate.candidate) sendSignaling(state, Object.assign({type: "candidate"}, e.candidate.toJSON()));
  };
  await pc.setRemoteDescription({type: "offer", sdp: offer.sdp});
  if (stream) for (const t of stream.getTracks()) pc.addTrack(t, stream);
  for (const t of pc.getTransceivers()) {
    if ((t.mid === state.mids.audio || t.mid === state.mids.video) && t.direction === "recvonly") t.direction = "sendrecv";
  }
  const a = await pc.createAnswer();
  await pc.setLocalDescription(a);
  state.ws.send(JSON.stringify({type: "answer", sdp: a.sdp}));
  state.ws.onmessage = (e) => {
    let m; try { m = JSON.parse(e.data); } catch { return; }
    if (m.type === "re-offer") onReOffer(state, m.sdp);
    else if (m.type === "ping") state.ws.send(JSON.stringify({type: "pong"}));
    else if (m.type === "notify") cb.onNotify(m);
  };
  state.ws.onclose = (e) => close(state, cb, {code: e.code, reason: e.reason});
  await new Promise((resolve, reject) => {
    const check = () => {
      if (pc.connectionState === "connected") { resolve(); return true; }
      if (pc.connectionState === "failed" || state.closed) { reject(new Error("peer connection " + pc.connectionState)); return true; }
      return false;
    };
    if (check()) return;
    pc.onconnectionstatechange = () => {
      if (check()) pc.onconnectionstatechange = () => { if (pc.connectionState === "failed") close(state, cb, {code: 0, reason: "PEER-CONNECTION-FAILED"}); };
    };
  });
}

function close(state, cb, why) {
  if (state.closed) return;
  state.closed = true;
  if (state.ws) { state.ws.onclose = null; state.ws.close(); }
  if (state.pc) state.pc.close();
  cb.onClose(why);
}

function makeConn(state, cb) {
  return {
    get connectionId() { return state.connectionId; },
    get url() { return state.url; },
    get redirects() { return state.redirects; },
    get pc() { return state.pc; },
    get closed() { return state.closed; },
    streamOf(trackId) { return state.streamOfTrack.get(trackId); },
    // send sends a message to the channel's other connections.
    send(text) {
      const dc = state.dcs[CHAT];
      if (!dc || dc.readyState !== "open") throw new Error("#chat is not open");
      dc.send(new TextEncoder().encode(text));
    },
    close() {
      if (state.closed) return;
      try { sendSignaling(state, {type: "disconnect", reason: "NO-ERROR"}); } catch {}
      close(state, cb, {code: 1000, reason: "NO-ERROR"});
    },
    // framesDecoded returns, per remote connection id, the frames its video
    // decoded so far.
    async framesDecoded() {
      const out = {};
      if (state.closed) return out;
      for (const r of state.pc.getReceivers()) {
        if (!r.track || r.track.kind !== "video" || r.track.readyState !== "live") continue;
        const sid = state.streamOfTrack.get(r.track.id);
        if (!sid) continue;
        const stats = await r.getStats();
        stats.forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "video") out[sid] = Math.max(out[sid] || 0, s.framesDecoded || 0); });
      }
      return out;
    },
  };
}
