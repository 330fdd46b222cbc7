package shoal_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/signaling"
)

// scrape fetches url and parses it with Prometheus's text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// metricValue returns the value of the sample of family name whose labels
// include every pair of labels (name, value, ...), and whether there is one.
func metricValue(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// A node's /metrics, parsed with Prometheus's own text parser, says what
// its clients did: connections by role, placement, connection events, the
// event webhook's deliveries, the node's mode and majority.
func TestMetricsScrape(t *testing.T) {
	testutil.CheckLeaks(t)
	events, hookURL := newEventLog(t)
	cfg := testSoloConfig(t, slog.LevelWarn)
	wh, err := signaling.NewEventWebhook(signaling.EventWebhookConfig{URL: hookURL, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wh.Close() })
	cfg.Signaling.Events = wh
	n := ntStart(t, cfg)
	metrics := httptest.NewServer(n.MetricsHandler())
	t.Cleanup(metrics.Close)

	c1, err := ntClient(t, n.url, "m1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ntClient(t, n.url, "m2"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, func() bool { return len(events.of(signaling.EventConnectionCreated)) == 2 }, 10*time.Second, "2 connection.created delivered")
	c1.Close()
	testutil.Eventually(t, func() bool { return len(events.of(signaling.EventSessionDestroyed)) == 1 }, 10*time.Second, "session.destroyed delivered")

	testutil.Eventually(t, func() bool { return wh.Stats().Delivered == 6 }, 10*time.Second, "6 events delivered")
	fams := scrape(t, metrics.URL)
	for _, want := range []struct {
		name   string
		labels []string
		value  float64
	}{
		{"shoal_connections", []string{"role", "recvonly"}, 1},
		{"shoal_connections", []string{"role", "sendrecv"}, 0},
		{"shoal_channels", nil, 1},
		{"shoal_node_in_majority", nil, 1},
		{"shoal_node_mode", []string{"mode", "normal"}, 1},
		{"shoal_node_mode", []string{"mode", "block_new_session"}, 0},
		{"shoal_placement_decisions_total", []string{"outcome", "serve"}, 2},
		{"shoal_placement_decisions_total", []string{"outcome", "refuse"}, 0},
		{"shoal_connection_events_total", []string{"event", "created"}, 2},
		{"shoal_connection_events_total", []string{"event", "destroyed"}, 1},
		{"shoal_session_events_total", []string{"event", "created"}, 2},
		{"shoal_session_events_total", []string{"event", "destroyed"}, 1},
		{"shoal_webhook_events_total", []string{"result", "delivered"}, 6},
		{"shoal_webhook_events_total", []string{"result", "dropped"}, 0},
		{"shoal_media_dropped_total", []string{"reason", "media_invalid"}, 0},
		{"shoal_relay_links", []string{"state", "up"}, 0},
	} {
		got, ok := metricValue(fams, want.name, want.labels...)
		if !ok || got != want.value {
			t.Errorf("%s%v = %v (present %v), want %v", want.name, want.labels, got, ok, want.value)
		}
	}
	for name, f := range fams {
		if name[:6] == "shoal_" && f.GetHelp() == "" {
			t.Errorf("%s has no help", name)
		}
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "connection_id" || lp.GetName() == "channel_id" {
					t.Errorf("%s has an unbounded label %s", name, lp.GetName())
				}
			}
		}
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
}
