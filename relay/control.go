package relay

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// announce sends the channel-open of ch with the ids of our tracks in it,
// then each track's description.
func (s *session) announce(ch *channel) {
	tracks := ch.localTracks()
	var p []byte
	p = binary.BigEndian.AppendUint16(p, uint16(len(tracks)))
	for _, t := range tracks {
		p = append(p, byte(len(t.info.ID)))
		p = append(p, t.info.ID...)
	}
	s.control(KindChannelOpen, ch.name, "", p)
	for _, t := range tracks {
		s.enqueueControl(KindTrackOpen, ch.name, t.info.ID, trackOpenFrame(ch.name, t.info))
	}
}

// control queues a control frame; see enqueueControl.
func (s *session) control(k Kind, channel, track string, payload []byte) bool {
	return s.enqueueControl(k, channel, track, controlFrame(k, channel, track, payload))
}

// maxControlQueued bounds a session's control queue (a variable for tests).
var maxControlQueued = 1 << 16

// enqueueControl queues a control frame (an announcement, a demand, a
// keyframe request, a heartbeat) on the session's control queue, which is
// never full: control is state, and losing it would leave the peer wrong
// for good. It only grows with changes of state, and is coalesced: a
// heartbeat or a keyframe request already waiting absorbs the next one of
// its kind (for the same track), and a track's demand waiting is replaced
// by the newer one in its place. A session whose stream cannot write for
// LinkTimeout breaks, and its next one announces the current state again.
// Control frames go out in the order queued, ahead of messages. Should
// maxControlQueued frames wait at once (a peer that stopped reading, faster
// than LinkTimeout), the session is closed instead: the next one announces
// the current state. It reports false when the session has ended.
func (s *session) enqueueControl(k Kind, channel, track string, b []byte) bool {
	s.ctlMu.Lock()
	if s.ctlDone {
		s.ctlMu.Unlock()
		return false
	}
	if len(s.ctl) >= maxControlQueued {
		s.ctlMu.Unlock()
		s.l.stats.controlOverflows.Add(1)
		s.close()
		return false
	}
	var key string
	switch k {
	case KindHeartbeat, KindKeyframe, KindTrackDemand:
		key = string(rune(k)) + channel + "\x00" + track
	}
	if i, ok := s.ctlKeys[key]; ok && key != "" {
		if k == KindTrackDemand {
			s.ctl[i] = b // the newer state, in the older one's place
		}
		s.l.stats.controlCoalesced.Add(1)
		s.ctlMu.Unlock()
		return true
	}
	if key != "" {
		if s.ctlKeys == nil {
			s.ctlKeys = map[string]int{}
		}
		s.ctlKeys[key] = len(s.ctl)
	}
	s.ctl = append(s.ctl, b)
	s.ctlMu.Unlock()
	select {
	case s.ctlKick <- struct{}{}:
	default:
	}
	return true
}

// takeControl returns the control frames waiting and empties the queue.
func (s *session) takeControl() [][]byte {
	s.ctlMu.Lock()
	defer s.ctlMu.Unlock()
	q := s.ctl
	if len(q) == 0 {
		return nil
	}
	s.ctl = nil
	clear(s.ctlKeys)
	return q
}

// endControl empties the control queue for good (the session ended).
func (s *session) endControl() {
	s.ctlMu.Lock()
	s.ctlDone = true
	s.ctl = nil
	s.ctlKeys = nil
	s.ctlMu.Unlock()
}

// enqueueMessage queues a message frame without blocking; a full message
// queue (Config.QueueLen) drops it, counted.
func (s *session) enqueueMessage(b []byte) bool {
	select {
	case <-s.done:
		return false
	default:
	}
	select {
	case s.out <- b:
		return true
	default:
		s.l.stats.drops.messageQueueFull.Add(1)
		return false
	}
}

// controlFrame returns a length-prefixed frame for the control stream.
func controlFrame(k Kind, channel, track string, payload []byte) []byte {
	b := make([]byte, 4, 4+frameHeaderLen+len(channel)+len(track)+len(payload))
	b = appendFrameStr(b, k, 0, channel, track, payload)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

func trackOpenFrame(channel string, info TrackInfo) []byte {
	return controlFrame(KindTrackOpen, channel, info.ID, appendTrackInfo(nil, info))
}

func writeControl(w io.Writer, b []byte) error {
	_, err := w.Write(b)
	return err
}

// readControl reads one length-prefixed frame into buf (grown as needed).
func readControl(br *bufio.Reader, buf []byte) (Frame, error) {
	var n [4]byte
	if _, err := io.ReadFull(br, n[:]); err != nil {
		return Frame{}, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size < frameHeaderLen || size > maxControlFrame {
		return Frame{}, fmt.Errorf("%w: control frame of %d bytes", ErrFrameLength, size)
	}
	if cap(buf) < int(size) {
		buf = make([]byte, size)
	}
	buf = buf[:size]
	if _, err := io.ReadFull(br, buf); err != nil {
		return Frame{}, err
	}
	return DecodeFrame(buf)
}

// writeLoop writes the control stream: control frames first, each time,
// then messages. A control frame queued before a message is written before
// it; a message's channel may have been closed by a control frame queued
// after it (the peer drops the message then).
func (s *session) writeLoop(ctx context.Context) error {
	bw := bufio.NewWriterSize(s.conn, 32<<10)
	timeout := s.l.r.cfg.LinkTimeout
	write := func(b []byte) error {
		_ = s.conn.SetWriteDeadline(time.Now().Add(timeout))
		_, err := bw.Write(b)
		return err
	}
	for {
		var msg []byte
		select {
		case <-ctx.Done():
			return nil
		case <-s.done:
			return nil
		case <-s.ctlKick:
		case msg = <-s.out:
		}
		// Write whatever else is queued, then flush.
		for {
			// Taken after msg was: every control frame queued before msg
			// is in ctl.
			ctl := s.takeControl()
			for _, b := range ctl {
				if err := write(b); err != nil {
					return err
				}
			}
			if msg == nil {
				select {
				case msg = <-s.out:
					continue // control queued meanwhile goes first
				default:
				}
				if len(ctl) == 0 {
					break
				}
				continue
			}
			if err := write(msg); err != nil {
				return err
			}
			msg = nil
		}
		_ = s.conn.SetWriteDeadline(time.Now().Add(timeout))
		if err := bw.Flush(); err != nil {
			return err
		}
	}
}

func (s *session) heartbeat(ctx context.Context) error {
	t := time.NewTicker(s.l.r.cfg.HeartbeatInterval)
	defer t.Stop()
	var ts [8]byte
	for {
		s.control(KindHeartbeat, "", "", nil)
		binary.BigEndian.PutUint64(ts[:], uint64(s.l.r.now()))
		_ = s.sendDatagram(KindPing, 0, "", "", ts[:])
		select {
		case <-ctx.Done():
			return nil
		case <-s.done:
			return nil
		case <-t.C:
		}
	}
}

// readLoop serves the control stream. A silent stream (no heartbeat for
// LinkTimeout) is broken.
func (s *session) readLoop() error {
	l, r := s.l, s.l.r
	buf := make([]byte, 64<<10)
	for {
		_ = s.conn.SetReadDeadline(time.Now().Add(r.cfg.LinkTimeout))
		f, err := readControl(s.br, buf)
		if err != nil {
			select {
			case <-s.done:
				return nil
			default:
			}
			return fmt.Errorf("relay: control stream from %s: %w", l.peer, err)
		}
		if err := l.handleControl(s, f); err != nil {
			// One per frame a peer sends: rate-limited.
			r.refusedLog.Log(context.Background(), r.log, slog.LevelWarn, "relay control frame refused", "peer", l.peer, "kind", f.Kind, "err", err)
		}
	}
}

func (l *link) handleControl(s *session, f Frame) error {
	r := l.r
	switch f.Kind {
	case KindHeartbeat:
		return nil
	case KindChannelOpen:
		rd := reader{b: f.Payload}
		n := int(rd.u16())
		keep := make(map[string]bool, n)
		for range n {
			keep[rd.str8()] = true
		}
		if rd.err != nil {
			return rd.err
		}
		ch, err := r.ensureChannel(string(f.Channel))
		if err != nil {
			return err
		}
		// Tracks the peer no longer has ended while the link was down.
		l.dropInbound(ch.name, keep)
		if ch.attach(l) {
			s.announce(ch)
		}
		return nil
	case KindChannelClose:
		r.mu.Lock()
		ch := r.channels[string(f.Channel)]
		r.mu.Unlock()
		if ch != nil {
			r.detach(ch, l)
		}
		return nil
	case KindTrackOpen:
		info, err := decodeTrackInfo(string(f.Track), f.Payload)
		if err != nil {
			return err
		}
		if err := info.validate(); err != nil {
			return err
		}
		return l.addInbound(string(f.Channel), info)
	case KindTrackClose:
		l.removeInbound(string(f.Channel), string(f.Track))
		return nil
	case KindTrackDemand:
		if len(f.Payload) != 1 {
			return fmt.Errorf("%w: track demand of %d bytes", ErrFrameLength, len(f.Payload))
		}
		r.chMu.RLock()
		ch := r.channels[string(f.Channel)]
		r.chMu.RUnlock()
		if ch == nil {
			return nil
		}
		if t := ch.localTrack(f.Track); t != nil {
			t.setWanted(l, f.Payload[0] != 0)
		}
		return nil
	case KindKeyframe:
		r.chMu.RLock()
		ch := r.channels[string(f.Channel)]
		r.chMu.RUnlock()
		if ch == nil {
			return nil
		}
		l.stats.keyframesIn.Add(1)
		if t := ch.localTrack(f.Track); t != nil {
			t.requestKeyframe()
		}
		return nil
	case KindMessage:
		m, err := decodeMessage(f.Payload)
		if err != nil {
			return err
		}
		r.chMu.RLock()
		ch := r.channels[string(f.Channel)]
		r.chMu.RUnlock()
		if ch == nil {
			l.stats.drops.noChannel.Add(1)
			return nil
		}
		ch.mu.Lock()
		sink, linked := ch.sink, false
		for _, x := range ch.linkList() {
			linked = linked || x == l
		}
		ch.mu.Unlock()
		if sink == nil || !linked {
			l.stats.drops.noChannel.Add(1)
			return nil
		}
		ch.stats.messagesIn.Add(1)
		sink.DeliverMessage(l.peer, m)
		return nil
	}
	return fmt.Errorf("%w: %d on the control stream", ErrFrameKind, f.Kind)
}
