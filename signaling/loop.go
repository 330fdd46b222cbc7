package signaling

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/shoal-sfu/shoal/signaling/wire"
)

// switchedDelay is how long the server waits, after the media side reports
// every data channel open, before it sends "switched": a "switched" that
// beats the client's datachannel event for a "#" channel loses the SDK's
// datachannel callback for it (300 ms is enough).
const switchedDelay = 300 * time.Millisecond

// The data channels the server itself reads or writes.
const (
	labelSignaling = "signaling"
	labelNotify    = "notify"
	labelPush      = "push"
)

// serving is the state of an offered connection's loop, owned by the
// session goroutine.
type serving struct {
	se    *session
	ctx   context.Context
	media MediaConn
	cfg   *Config

	awaiting     string // the answer type expected, or ""
	answerTimer  *time.Timer
	pingC        <-chan time.Time // nil when not pinging
	pongTimer    *time.Timer
	awaitingPong bool
	candidates   int

	// Switching to data-channel signaling.
	answered, dcOpen bool
	switchTimer      *time.Timer
	switchC          <-chan time.Time
}

// loop serves an offered connection until it ends.
//
// With data-channel signaling in effect, once the initial answer is applied
// and the media side reports every data channel open, it waits
// switchedDelay and sends "switched" on the WebSocket. From then on
// re-offers go on the "signaling" data channel, notifies on "notify" and
// pushes on "push" (each on the WebSocket if the offer lacks the channel).
// With ignore_disconnect_websocket the client then closes the WebSocket:
// the session stops pinging, ignores the socket's end and lives on until
// the media ends, the client's disconnect arrives on the data channel, or
// the server or the API ends it (run sends close on the data channel).
func (se *session) loop(ctx context.Context, media MediaConn) ending {
	cfg := &se.srv.cfg
	l := &serving{se: se, ctx: ctx, media: media, cfg: cfg, awaiting: wire.TypeAnswer}
	l.answerTimer = time.NewTimer(cfg.AnswerTimeout)
	defer l.answerTimer.Stop()
	if cfg.PingInterval > 0 {
		tk := time.NewTicker(cfg.PingInterval)
		defer tk.Stop()
		l.pingC = tk.C
	}
	l.pongTimer = time.NewTimer(time.Hour)
	l.pongTimer.Stop()
	defer l.pongTimer.Stop()
	defer func() {
		if l.switchTimer != nil {
			l.switchTimer.Stop()
		}
	}()
	in := se.in // nil once the WebSocket is gone

	for {
		select {
		case m := <-in:
			if m.err != nil {
				var pe *wire.ProtocolError
				if se.switched && se.ignoreWS && !errors.As(m.err, &pe) {
					// The client dropped the WebSocket as switched told it.
					se.wsGone, in = true, nil
					se.logger.Debug("websocket closed after switched; signaling goes on over the data channels", "err", m.err)
					continue
				}
				return readErrEnding(m.err)
			}
			if e := l.handle(m.data, "websocket"); e != nil {
				return *e
			}
		case <-se.events.Wake():
			q, overflow := se.events.Take()
			if overflow {
				return ending{code: wire.CloseInternalError, reason: "TOO-SLOW", err: errors.New("event queue overflow")}
			}
			if e := l.deliver(q); e != nil {
				return *e
			}
		case <-l.switchC:
			l.switchC = nil
			if err := se.write(ctx, wire.Switched{Type: wire.TypeSwitched, IgnoreDisconnectWebSocket: se.ignoreWS}); err != nil {
				return ending{err: fmt.Errorf("write switched: %w", err), now: true}
			}
			se.switched = true
			se.logger.Debug("switched to data-channel signaling", "ignore_disconnect_websocket", se.ignoreWS)
			if se.ignoreWS {
				l.stopPinging()
			}
		case <-l.answerTimer.C:
			return ending{code: wire.CloseAnswerTimeout, reason: "ANSWER-TIMEOUT", err: fmt.Errorf("no %s within %v", l.awaiting, cfg.AnswerTimeout)}
		case <-l.pingC:
			if err := se.write(ctx, wire.Ping{Type: wire.TypePing}); err != nil {
				return ending{err: err, now: true}
			}
			if !l.awaitingPong {
				l.awaitingPong = true
				l.pongTimer.Reset(cfg.PongTimeout)
			}
		case <-l.pongTimer.C:
			return ending{code: wire.ClosePingTimeout, reason: "PING-TIMEOUT"}
		case <-media.Done():
			return ending{code: 1000, reason: "MEDIA-CLOSED"}
		case <-se.killed:
			return se.killEnding()
		case <-ctx.Done():
			return ending{code: wire.CloseServerShutdown, reason: "SERVER-SHUTDOWN"}
		}
	}
}

// handle acts on one client message, from the WebSocket or the
// "signaling" data channel (from says which, for the log).
func (l *serving) handle(data []byte, from string) *ending {
	msg, err := wire.DecodeClientMessage(data, l.cfg.MaxMessageSize)
	if err != nil {
		return ended(endProto(err))
	}
	switch m := msg.(type) {
	case *wire.Connect:
		return &ending{code: wire.CloseUnexpected, reason: "UNEXPECTED-CONNECT"}
	case *wire.Answer:
		if m.Type != l.awaiting {
			return &ending{code: wire.CloseUnexpected, reason: "UNEXPECTED-" + upper(m.Type), err: fmt.Errorf("%s while expecting %q", m.Type, l.awaiting)}
		}
		if err := l.media.SetAnswer(m.SDP); err != nil {
			return &ending{code: wire.CloseInvalidMessage, reason: "INVALID-ANSWER", err: err}
		}
		l.se.logger.Debug("answer applied", "type", m.Type, "from", from)
		l.awaiting = ""
		l.answerTimer.Stop()
		if !l.answered {
			l.answered = true
			l.se.announceCreated()
			l.maybeSwitch()
		}
	case *wire.Candidate:
		if l.candidates++; l.candidates > l.cfg.MaxCandidates {
			return &ending{code: wire.CloseTooManyCandidates, reason: "TOO-MANY-CANDIDATES"}
		}
		if err := l.media.AddCandidate(*m); err != nil {
			l.se.logger.Debug("candidate refused", "err", err)
		}
	case *wire.Pong:
		l.awaitingPong = false
		l.pongTimer.Stop()
	case *wire.Disconnect:
		l.se.logger.Debug("client disconnected", "reason", m.Reason)
		return &ending{code: 1000, reason: "TYPE-DISCONNECT", byClient: true}
	}
	return nil
}

// deliver acts on the events queued by the media side and the API, in
// order.
func (l *serving) deliver(q []queued) *ending {
	for _, it := range q {
		switch {
		case it.reOffer != "":
			if e := l.sendJSON(labelSignaling, wire.ReOffer{Type: wire.TypeReOffer, SDP: it.reOffer}); e != nil {
				return e
			}
			l.se.logger.Debug("re-offer sent", "on", l.route(labelSignaling))
			l.awaiting = wire.TypeReAnswer
			l.answerTimer.Reset(l.cfg.AnswerTimeout)
		case it.event != nil:
			if e := l.sendJSON(labelNotify, notifyFor(it.event)); e != nil {
				return e
			}
		case it.raw != nil:
			if e := l.send(labelPush, it.raw); e != nil {
				return e
			}
		case it.switched != nil:
			if e := l.sendJSON(labelNotify, simulcastNotify(it.switched, time.Now())); e != nil {
				return e
			}
		case it.rid != nil:
			if rs, ok := l.media.(SimulcastRidSetter); ok {
				if err := rs.SetSimulcastRid(it.rid.sender, it.rid.rid); err != nil {
					l.se.logger.Info("simulcast rid not changed", "rid", it.rid.rid, "err", err)
				}
			}
		case it.dcOpen:
			l.dcOpen = true
			l.maybeSwitch()
		case it.label == labelSignaling:
			if e := l.handle(it.data, "datachannel"); e != nil {
				return e
			}
		}
	}
	return nil
}

// maybeSwitch starts the wait before "switched" once data-channel
// signaling is in effect, the answer applied and every data channel open.
func (l *serving) maybeSwitch() {
	se := l.se
	if se.wantDC && l.answered && l.dcOpen && l.switchTimer == nil && se.dcLabels[labelSignaling] {
		l.switchTimer = time.NewTimer(switchedDelay)
		l.switchC = l.switchTimer.C
	}
}

// stopPinging is for a WebSocket that is closing or gone: the SDK answers
// ping only there.
func (l *serving) stopPinging() {
	l.pingC = nil
	l.awaitingPong = false
	l.pongTimer.Stop()
}

// send writes one server message: on the data channel label after
// switched (when the offer has it), else on the WebSocket, unless the
// client was told to drop it.
func (l *serving) send(label string, b []byte) *ending {
	se := l.se
	if se.switched && se.dcLabels[label] {
		if err := l.media.SendText(label, string(b)); err != nil {
			return &ending{code: wire.CloseInternalError, reason: "DATA-CHANNEL-ERROR", err: fmt.Errorf("send on data channel %q: %w", label, err)}
		}
		return nil
	}
	if se.switched && se.ignoreWS {
		se.logger.Debug("message dropped: no data channel for it and the WebSocket is dropped", "label", label)
		return nil
	}
	if err := se.writeRaw(l.ctx, b); err != nil {
		return &ending{err: err, now: true}
	}
	return nil
}

// route says where send puts a message for label: "datachannel",
// "websocket" or "nowhere" (the client was told to drop the WebSocket
// and the offer has no such channel).
func (l *serving) route(label string) string {
	switch se := l.se; {
	case se.switched && se.dcLabels[label]:
		return "datachannel"
	case se.switched && se.ignoreWS:
		return "nowhere"
	}
	return "websocket"
}

func (l *serving) sendJSON(label string, v any) *ending {
	b, err := json.Marshal(v)
	if err != nil {
		return &ending{code: wire.CloseInternalError, reason: "INTERNAL-ERROR", err: err}
	}
	return l.send(label, b)
}

func notifyFor(ev *ConnectionEvent) wire.Notify {
	return wire.Notify{Type: wire.TypeNotify, EventType: ev.Type, ConnectionID: ev.ConnectionID, ClientID: ev.ClientID,
		Role: ev.Role, ChannelConnections: ev.Counts.Connections, ChannelSendrecvConnections: ev.Counts.SendRecv,
		ChannelSendonlyConnections: ev.Counts.SendOnly, ChannelRecvonlyConnections: ev.Counts.RecvOnly}
}

// simulcastNotify is the notify of a layer switch.
func simulcastNotify(ev *SimulcastSwitch, now time.Time) wire.NotifySimulcastSwitched {
	priority := "lower"
	if ev.Current > ev.Previous { // "r0" < "r1" < "r2"
		priority = "higher"
	}
	return wire.NotifySimulcastSwitched{Type: wire.TypeNotify, EventType: wire.EventSimulcastSwitched,
		Timestamp: now.UTC().Format(time.RFC3339Nano), SenderConnectionID: ev.SenderConnectionID,
		Priority: priority, Trigger: ev.Trigger, RPCRids: []string{}, AutoRids: append([]string{}, ev.AutoRids...),
		RequestRid: ev.Requested, CurrentRid: ev.Current, PreviousRid: ev.Previous}
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
