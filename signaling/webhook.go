package signaling

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of EventWebhookConfig.
const (
	DefaultEventWebhookQueue      = 4096
	DefaultEventWebhookWorkers    = 4
	DefaultEventWebhookTimeout    = 5 * time.Second
	DefaultEventWebhookRetries    = 3
	DefaultEventWebhookBackoff    = 200 * time.Millisecond
	DefaultEventWebhookMaxBackoff = 5 * time.Second
	DefaultConnectionUpdatedEvery = time.Minute
)

// EventSink receives the server's events (Config.Events). Emit must not
// block: the server calls it from its sessions' goroutines.
// *EventWebhook is the EventSink that POSTs them to a URL.
type EventSink interface {
	Emit(ev Event)
}

// EventWebhookConfig configures an EventWebhook.
type EventWebhookConfig struct {
	// URL receives a POST of each event's JSON body. Required.
	URL string
	// NodeName goes in every body's node_name.
	NodeName string
	// Label and Version go in every body's label and version ("Shoal" and
	// "" by default).
	Label, Version string
	// Logger receives the webhook's logs; nil means slog.Default().
	Logger *slog.Logger
	// HTTPClient sends the requests; nil means a client of its own. Timeout
	// bounds each attempt whatever the client's own timeout.
	HTTPClient *http.Client
	// Timeout bounds one attempt; 0 means DefaultEventWebhookTimeout.
	Timeout time.Duration
	// QueueSize bounds the events waiting to be sent; an event that finds
	// the queue full is dropped and counted (Stats.Dropped). 0 means
	// DefaultEventWebhookQueue.
	QueueSize int
	// Workers is how many requests may be in flight at once; 0 means
	// DefaultEventWebhookWorkers.
	Workers int
	// Retries is how many times a failed attempt (an error, a timeout or a
	// status outside 2xx) is tried again before the event is abandoned
	// (Stats.Abandoned); 0 means DefaultEventWebhookRetries, a negative value
	// none.
	Retries int
	// Backoff is the wait before the first retry, doubled for each next
	// one up to MaxBackoff; 0 means DefaultEventWebhookBackoff and
	// DefaultEventWebhookMaxBackoff.
	Backoff, MaxBackoff time.Duration
	// UpdatedInterval is the period of connection.updated for each live
	// connection; 0 means DefaultConnectionUpdatedEvery (a minute, as
	// Sora's connection_updated_webhook_interval), a negative value turns
	// connection.updated off.
	UpdatedInterval time.Duration
}

// WebhookStats counts an EventWebhook's deliveries.
type WebhookStats struct {
	// Emitted counts the events given to Emit (connection.updated included).
	Emitted uint64
	// Updated counts the connection.updated events made.
	Updated uint64
	// Delivered counts the events the receiver accepted (2xx).
	Delivered uint64
	// FailedAttempts counts the attempts that failed (error, timeout,
	// non-2xx), retries included.
	FailedAttempts uint64
	// Abandoned counts the events given up after the last retry.
	Abandoned uint64
	// Dropped counts the events never sent because the queue was full (or
	// the webhook closed).
	Dropped uint64
	// Queued is the number of events waiting now.
	Queued int
}

// EventWebhook delivers events to a URL: asynchronously, from a bounded
// queue, by a few workers, each attempt with a timeout, failed ones
// retried with a doubling backoff. Emit never blocks: a slow or dead
// receiver costs the signaling server nothing but dropped events, which
// are counted. It also sends connection.updated every UpdatedInterval for
// each connection it saw created and not yet destroyed. Create it with
// NewEventWebhook, give it to Config.Events, and Close it after the
// Server.
type EventWebhook struct {
	cfg    EventWebhookConfig
	logger *slog.Logger
	client *http.Client
	queue  chan pendingEvent
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool
	// closeMu orders Emit's send against Close's drain: Emit holds it for
	// reading.
	closeMu sync.RWMutex

	emitted, updated, delivered, failed, abandoned, dropped atomic.Uint64

	mu   sync.Mutex
	live map[string]Event // connections created and not destroyed, by id
	// dropLog rate-limits the "queue full" log line.
	dropLog time.Time
}

// pendingEvent is one event's encoded body.
type pendingEvent struct {
	typ  string
	id   string
	body []byte
}

var _ EventSink = (*EventWebhook)(nil)

// NewEventWebhook validates cfg and starts the webhook's workers (and the
// connection.updated ticker). Close stops them.
func NewEventWebhook(cfg EventWebhookConfig) (*EventWebhook, error) {
	if cfg.URL == "" {
		return nil, errors.New("signaling: EventWebhookConfig.URL is empty")
	}
	for name, d := range map[string]time.Duration{"Timeout": cfg.Timeout, "Backoff": cfg.Backoff, "MaxBackoff": cfg.MaxBackoff} {
		if d < 0 {
			return nil, fmt.Errorf("signaling: EventWebhookConfig.%s %v is negative", name, d)
		}
	}
	if cfg.QueueSize < 0 || cfg.Workers < 0 {
		return nil, fmt.Errorf("signaling: EventWebhookConfig QueueSize %d / Workers %d is negative", cfg.QueueSize, cfg.Workers)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultEventWebhookTimeout
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = DefaultEventWebhookQueue
	}
	if cfg.Workers == 0 {
		cfg.Workers = DefaultEventWebhookWorkers
	}
	switch {
	case cfg.Retries == 0:
		cfg.Retries = DefaultEventWebhookRetries
	case cfg.Retries < 0:
		cfg.Retries = 0
	}
	if cfg.Backoff == 0 {
		cfg.Backoff = DefaultEventWebhookBackoff
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = DefaultEventWebhookMaxBackoff
	}
	if cfg.UpdatedInterval == 0 {
		cfg.UpdatedInterval = DefaultConnectionUpdatedEvery
	}
	if cfg.Label == "" {
		cfg.Label = "Shoal"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &EventWebhook{cfg: cfg, logger: cfg.Logger.With("component", "event-webhook"), client: client,
		queue: make(chan pendingEvent, cfg.QueueSize), ctx: ctx, cancel: cancel, live: map[string]Event{}}
	for range cfg.Workers {
		w.wg.Add(1)
		go w.work()
	}
	if cfg.UpdatedInterval > 0 {
		w.wg.Add(1)
		go w.tick()
	}
	return w, nil
}

// Emit queues ev without blocking; a full queue drops it (Stats.Dropped).
// Events before a connection.created's matching end update the set of
// live connections that connection.updated reports on.
func (w *EventWebhook) Emit(ev Event) {
	switch ev.Type {
	case EventConnectionCreated:
		w.mu.Lock()
		w.live[ev.ConnectionID] = ev
		w.mu.Unlock()
	case EventConnectionDestroyed, EventConnectionFailed:
		w.mu.Lock()
		delete(w.live, ev.ConnectionID)
		w.mu.Unlock()
	}
	w.enqueue(ev)
}

func (w *EventWebhook) enqueue(ev Event) {
	w.emitted.Add(1)
	if ev.ID == "" {
		ev.ID = newConnectionID()
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	body, err := ev.body(w.cfg.NodeName, w.cfg.Label, w.cfg.Version)
	if err != nil { // our own types: cannot happen
		w.logger.Error("event not encoded", "type", ev.Type, "err", err)
		w.dropped.Add(1)
		return
	}
	w.closeMu.RLock()
	defer w.closeMu.RUnlock()
	if w.closed.Load() {
		w.dropped.Add(1)
		return
	}
	select {
	case w.queue <- pendingEvent{typ: ev.Type, id: ev.ID, body: body}:
	default:
		w.dropped.Add(1)
		w.mu.Lock()
		logIt := time.Since(w.dropLog) > 10*time.Second
		if logIt {
			w.dropLog = time.Now()
		}
		w.mu.Unlock()
		if logIt {
			w.logger.Warn("event webhook queue full: events dropped (the receiver is slow or down)",
				"url", w.cfg.URL, "queue", w.cfg.QueueSize, "dropped_total", w.dropped.Load())
		}
	}
}

// Stats returns the delivery counters.
func (w *EventWebhook) Stats() WebhookStats {
	return WebhookStats{Emitted: w.emitted.Load(), Updated: w.updated.Load(), Delivered: w.delivered.Load(), FailedAttempts: w.failed.Load(),
		Abandoned: w.abandoned.Load(), Dropped: w.dropped.Load(), Queued: len(w.queue)}
}

// Close stops the workers at once (requests in flight are cancelled) and
// counts the events still queued as dropped. Safe to call twice.
func (w *EventWebhook) Close() error {
	w.closeMu.Lock()
	first := !w.closed.Swap(true)
	w.closeMu.Unlock()
	if !first {
		return nil
	}
	w.cancel()
	w.wg.Wait()
	for {
		select {
		case <-w.queue:
			w.dropped.Add(1)
		default:
			return nil
		}
	}
}

// work sends queued events until Close.
func (w *EventWebhook) work() {
	defer w.wg.Done()
	for {
		select {
		case <-w.ctx.Done():
			return
		case p := <-w.queue:
			w.deliver(p)
		}
	}
}

// deliver sends one event, retrying with backoff.
func (w *EventWebhook) deliver(p pendingEvent) {
	backoff := w.cfg.Backoff
	for attempt := 0; ; attempt++ {
		err := w.post(p)
		if err == nil {
			w.delivered.Add(1)
			return
		}
		w.failed.Add(1)
		if attempt >= w.cfg.Retries || w.ctx.Err() != nil {
			w.abandoned.Add(1)
			w.logger.Debug("event webhook gave up", "type", p.typ, "id", p.id, "attempts", attempt+1, "err", err)
			return
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-w.ctx.Done():
			t.Stop()
			w.abandoned.Add(1)
			return
		}
		backoff = min(2*backoff, w.cfg.MaxBackoff)
	}
}

// post makes one attempt.
func (w *EventWebhook) post(p pendingEvent) error {
	ctx, cancel := context.WithTimeout(w.ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(p.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("sora-event-webhook-type", p.typ)
	req.Header.Set("shoal-event-id", p.id)
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// tick sends connection.updated for every live connection each
// UpdatedInterval.
func (w *EventWebhook) tick() {
	defer w.wg.Done()
	t := time.NewTicker(w.cfg.UpdatedInterval)
	defer t.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case now := <-t.C:
			w.mu.Lock()
			live := make([]Event, 0, len(w.live))
			for _, ev := range w.live {
				live = append(live, ev)
			}
			w.mu.Unlock()
			for _, ev := range live {
				ev.Type, ev.ID, ev.Time = EventConnectionUpdated, "", now
				w.updated.Add(1)
				w.enqueue(ev)
			}
		}
	}
}

// webhookBody is an event's JSON body, Sora's fields (connection events
// and session events share the envelope) plus "id".
type webhookBody struct {
	ID           string          `json:"id"`
	Type         string          `json:"type"`
	Timestamp    string          `json:"timestamp"`
	Label        string          `json:"label"`
	Version      string          `json:"version,omitempty"`
	NodeName     string          `json:"node_name,omitempty"`
	ChannelID    string          `json:"channel_id"`
	ClientID     string          `json:"client_id,omitempty"`
	BundleID     string          `json:"bundle_id,omitempty"`
	ConnectionID string          `json:"connection_id,omitempty"`
	Role         string          `json:"role,omitempty"`
	Multistream  bool            `json:"multistream"`
	Simulcast    *bool           `json:"simulcast,omitempty"`
	Spotlight    *bool           `json:"spotlight,omitempty"`
	Audio        *bool           `json:"audio,omitempty"`
	Video        *bool           `json:"video,omitempty"`
	EventMeta    json.RawMessage `json:"event_metadata,omitempty"`
	Data         any             `json:"data,omitempty"`
	// session events
	CreatedTime        int64  `json:"created_time,omitempty"`
	CreatedTimestamp   string `json:"created_timestamp,omitempty"`
	DestroyedTime      int64  `json:"destroyed_time,omitempty"`
	DestroyedTimestamp string `json:"destroyed_timestamp,omitempty"`
}

// connectionData is the "data" of a connection event.
type connectionData struct {
	CreatedTime        int64            `json:"created_time,omitempty"`
	CreatedTimestamp   string           `json:"created_timestamp,omitempty"`
	DestroyedTime      int64            `json:"destroyed_time,omitempty"`
	DestroyedTimestamp string           `json:"destroyed_timestamp,omitempty"`
	Minutes            int64            `json:"minutes"`
	Reason             string           `json:"reason,omitempty"`
	Audio              *ConnectionMedia `json:"audio,omitempty"`
	Video              *ConnectionMedia `json:"video,omitempty"`
}

const timestampLayout = "2006-01-02T15:04:05.000000Z"

func (ev *Event) body(node, label, version string) ([]byte, error) {
	b := webhookBody{ID: ev.ID, Type: ev.Type, Timestamp: ev.Time.UTC().Format(timestampLayout), Label: label,
		Version: version, NodeName: node, ChannelID: ev.ChannelID, Multistream: true}
	if ev.NodeName != "" {
		b.NodeName = ev.NodeName
	}
	switch ev.Type {
	case EventSessionCreated, EventSessionDestroyed:
		if !ev.Created.IsZero() {
			b.CreatedTime, b.CreatedTimestamp = ev.Created.Unix(), ev.Created.UTC().Format(timestampLayout)
		}
		if ev.Type == EventSessionDestroyed {
			b.DestroyedTime, b.DestroyedTimestamp = ev.Time.Unix(), ev.Time.UTC().Format(timestampLayout)
		}
	default:
		f := false
		audio, video := ev.Audio != nil, ev.Video != nil
		b.ClientID, b.BundleID, b.ConnectionID, b.Role = ev.ClientID, ev.BundleID, ev.ConnectionID, string(ev.Role)
		b.Simulcast, b.Spotlight, b.Audio, b.Video = &ev.Simulcast, &f, &audio, &video
		b.EventMeta = ev.EventMetadata
		d := connectionData{Reason: ev.Reason, Audio: ev.Audio, Video: ev.Video}
		if !ev.Created.IsZero() {
			d.CreatedTime, d.CreatedTimestamp = ev.Created.Unix(), ev.Created.UTC().Format(timestampLayout)
			d.Minutes = int64(ev.Time.Sub(ev.Created) / time.Minute)
		}
		if ev.Type == EventConnectionDestroyed {
			d.DestroyedTime, d.DestroyedTimestamp = ev.Time.Unix(), ev.Time.UTC().Format(timestampLayout)
		}
		b.Data = d
	}
	return json.Marshal(b)
}
