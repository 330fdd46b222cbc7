package signaling

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/shoal-sfu/shoal/internal/lograte"
	"github.com/shoal-sfu/shoal/internal/mailbox"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

// maxQueued bounds the events waiting for one session's goroutine; a
// client that cannot keep up with its channel is dropped.
const maxQueued = 4096

// inMsg is one message from the reader goroutine: data, or the error that
// ended reading.
type inMsg struct {
	data []byte
	err  error
}

// queued is one event from the media side, for the session goroutine.
type queued struct {
	reOffer string
	event   *ConnectionEvent
	label   string
	data    []byte
	raw     []byte // a server message to write as is (push)
	dcOpen  bool   // every data channel is open (MediaEvents.DataChannelsOpen)
	// switched is a layer switch to notify (MediaEvents.SimulcastSwitched).
	switched *SimulcastSwitch
	// rid is a layer to receive, from the admin API (RequestSimulcastRid).
	rid *ridRequest
}

// ridRequest is RequestSimulcastRid for one session's connection.
type ridRequest struct{ sender, rid string }

// session is one WebSocket. Its goroutine (the ServeHTTP one) owns it and
// does every write; a reader goroutine it starts feeds `in`.
type session struct {
	srv    *Server
	ws     *websocket.Conn
	logger *slog.Logger
	in     chan inMsg
	// events holds what the media side and the API queue for the session
	// goroutine, at most maxQueued.
	events *mailbox.Box[queued]

	// slot: placement chose to serve here and a slot is taken (see
	// Server.place); owned by the session goroutine.
	slot bool

	mu       sync.Mutex
	served   bool
	infoV    ConnectionInfo
	killCode int
	killWhy  string
	killed   chan struct{}
	killOnce sync.Once
	media    MediaConn

	// Data-channel signaling; owned by the session goroutine.
	wantDC   bool            // data_channel_signaling in effect
	ignoreWS bool            // ignore_disconnect_websocket in effect (with wantDC)
	dcLabels map[string]bool // offer.data_channels
	switched bool            // "switched" was sent
	wsGone   bool            // the WebSocket closed after a switched with ignoreWS

	// Events (webhook_events.go); owned by the session goroutine.
	announced bool   // connection.created was emitted
	bundleID  string // the offer's bundle_id
	simulcast bool   // the offer's simulcast
}

func (se *session) info() (ConnectionInfo, bool) {
	se.mu.Lock()
	defer se.mu.Unlock()
	return se.infoV, se.served
}

func (se *session) kill(code int, reason string) {
	se.killOnce.Do(func() {
		se.mu.Lock()
		se.killCode, se.killWhy = code, reason
		se.mu.Unlock()
		close(se.killed)
	})
}

func (se *session) killEnding() ending {
	se.mu.Lock()
	defer se.mu.Unlock()
	return ending{code: se.killCode, reason: se.killWhy}
}

// push queues a media event without blocking the media side.
// An overflow ends the session (TOO-SLOW) when its goroutine wakes.
func (se *session) push(q queued) { se.events.Put(q) }

// ending is how a session ends: code 0 means the peer is gone, so the
// socket is dropped without a handshake.
type ending struct {
	code   int
	reason string
	err    error // for the log
	now    bool  // skip the close handshake (peer presumed dead)
	// byClient is the client's own disconnect: after switched it waits for
	// the data channels to close and must not get a close message.
	byClient bool
}

func endProto(err error) ending {
	var pe *wire.ProtocolError
	if errors.As(err, &pe) {
		return ending{code: pe.Code, reason: pe.Reason, err: err}
	}
	return ending{code: wire.CloseInternalError, reason: "INTERNAL-ERROR", err: err}
}

// readErrEnding turns a reader error into the session's end.
func readErrEnding(err error) ending {
	var pe *wire.ProtocolError
	if errors.As(err, &pe) {
		return ending{code: pe.Code, reason: pe.Reason, err: err}
	}
	return ending{err: err} // peer closed or the socket broke
}

// closeFirstWait bounds how long a session's media outlives its WebSocket
// close handshake (see session.run).
const closeFirstWait = time.Second

// clientCloseWait bounds how long, after a client's disconnect and the
// WebSocket's close handshake, the server waits for the client to close
// its peer connection before closing it itself.
const clientCloseWait = time.Second

// dataChannelCloseWait bounds how long a switched client that disconnected
// may take to close its data channels (the SDK waits 3 s for them).
const dataChannelCloseWait = 2 * time.Second

func (se *session) run(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	// The reader has its own context: cancelling a read makes coder/websocket
	// drop the connection, which must wait for the close handshake below.
	rctx, rcancel := context.WithCancel(context.Background())
	readDone := make(chan struct{})
	se.ws.SetReadLimit(-1) // the reader enforces MaxMessageSize itself, with its own close code
	go se.read(rctx, readDone)

	end := se.handle(ctx)

	// A live client gets the close frame before its media ends: the SDK
	// reports a data channel closing first as an error (abend
	// DATA-CHANNEL-ONERROR) instead of the server's code and reason. The
	// handshake may wait for a dead client, so the media is freed after it,
	// or after closeFirstWait at the most.
	se.mu.Lock()
	m, served, info := se.media, se.served, se.infoV
	se.served = false // no longer listed, pushed to or disconnected
	se.mu.Unlock()
	if se.switched && end.byClient && m != nil {
		// The SDK waits for its data channels to close after a disconnect
		// sent on one.
		if dc, ok := m.(DataChannelCloser); ok {
			cctx, ccancel := context.WithTimeout(context.Background(), dataChannelCloseWait)
			if err := dc.CloseDataChannels(cctx); err != nil {
				se.logger.Debug("data channels not closed in time", "err", err)
			}
			ccancel()
		}
	}
	closed := make(chan struct{})
	if se.switched && se.ignoreWS {
		// The client dropped (or is dropping) the WebSocket: the end goes
		// on the "signaling" data channel, and the media closes after it.
		_ = se.ws.CloseNow()
		close(closed)
		if m != nil && end.code != 0 && !end.byClient {
			se.closeOverDataChannel(m, end)
		}
	} else if end.code == 0 || end.now {
		_ = se.ws.CloseNow()
		close(closed)
	} else {
		go func() {
			defer close(closed)
			_ = se.ws.Close(websocket.StatusCode(end.code), truncateReason(end.reason))
		}()
		t := time.NewTimer(closeFirstWait)
		select {
		case <-closed:
		case <-t.C:
		}
		t.Stop()
	}
	if end.byClient && m != nil {
		// After its disconnect the SDK closes its own peer connection, once
		// the WebSocket (or, switched, every data channel) has closed; ours
		// closing first can reach it as a data channel error before it has
		// seen those close (abend DATA-CHANNEL-ONERROR, or
		// DISCONNECT-DATA-CHANNEL-ERROR when switched).
		t := time.NewTimer(clientCloseWait)
		select {
		case <-m.Done():
		case <-t.C:
		}
		t.Stop()
	}
	if m != nil {
		_ = m.Close()
	}
	if served {
		se.announceEnd(info, end.reason)
		se.srv.served(info.ChannelID, -1)
		se.srv.release(info.ChannelID)
	}
	se.releaseSlot()
	<-closed
	rcancel()
	<-readDone
	const ended = "signaling session ended"
	if end.code >= 4400 && end.code != wire.CloseRefused {
		// A client ends its session on an error at will (bad JSON, auth
		// denied, ...): rate-limited per close code.
		se.srv.endedLog.LogKind(context.Background(), se.logger, slog.LevelInfo, lograte.Key(uint64(end.code), ended), ended, "code", end.code, "reason", end.reason, "err", end.err)
	} else {
		se.logger.Debug(ended, "code", end.code, "reason", end.reason, "err", end.err)
	}
}

// closeOverDataChannel tells a switched client without WebSocket that its
// session ends ({"type":"close","code","reason"} on the "signaling" data
// channel), then gives the message closeFirstWait at the
// most to leave before the caller closes the media (the client closes its
// peer connection when it gets it, which may end the media first).
func (se *session) closeOverDataChannel(m MediaConn, end ending) {
	select {
	case <-m.Done():
		return // nothing to send it on
	default:
	}
	b, err := json.Marshal(wire.Close{Type: wire.TypeClose, Code: end.code, Reason: truncateReason(end.reason)})
	if err == nil {
		err = m.SendText(labelSignaling, string(b))
	}
	if err != nil {
		se.logger.Debug("close not sent on the data channel", "err", err)
		return
	}
	t := time.NewTimer(closeFirstWait)
	defer t.Stop()
	select {
	case <-m.Done():
	case <-t.C:
	}
}

// read feeds se.in until the socket fails or ctx ends.
func (se *session) read(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	max := se.srv.cfg.MaxMessageSize
	for {
		typ, r, err := se.ws.Reader(ctx)
		var b []byte
		if err == nil {
			b, err = io.ReadAll(io.LimitReader(r, int64(max)+1))
			switch {
			case err != nil:
			case len(b) > max:
				err = wire.Errorf(wire.CloseMessageTooLarge, "MESSAGE-TOO-LARGE", "message over the limit of %d bytes", max)
			case typ != websocket.MessageText:
				err = wire.Errorf(wire.CloseInvalidMessage, "BINARY-MESSAGE", "binary frame; signaling messages are JSON text")
			}
		}
		select {
		case se.in <- inMsg{data: b, err: err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

func (se *session) write(ctx context.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return se.writeRaw(ctx, b)
}

// writeRaw writes one message already encoded.
func (se *session) writeRaw(ctx context.Context, b []byte) error {
	// Not cancelled with the session: coder/websocket drops the connection
	// when a write's context ends, and a shutting-down session still
	// closes with a handshake.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), se.srv.cfg.WriteTimeout)
	defer cancel()
	return se.ws.Write(ctx, websocket.MessageText, b)
}

// truncateReason cuts a close reason to wire.MaxCloseReason bytes on a rune
// boundary.
func truncateReason(s string) string {
	if len(s) <= wire.MaxCloseReason {
		return s
	}
	s = s[:wire.MaxCloseReason]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
