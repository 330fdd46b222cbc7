package signaling

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/shoal-sfu/shoal/affinity"
)

// These benchmarks measure the signaling path alone (fake media): open a
// socket, connect, authenticate, place, offer, answer, disconnect, close.
// The root package's benchmarks add real WebRTC (BenchmarkConnectSFU).

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(discard{}, &slog.HandlerOptions{Level: slog.LevelError}))
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func benchServer(b *testing.B, cfg Config) string {
	cfg.Logger = quietLogger()
	if cfg.Media == nil {
		cfg.Media = &benchMedia{}
	}
	if cfg.Authenticator == nil {
		cfg.Authenticator = AllowAll
	}
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(s)
	b.Cleanup(func() { s.Close(); hs.Close() })
	return "ws" + strings.TrimPrefix(hs.URL, "http")
}

// benchMedia is a Media that keeps nothing.
type benchMedia struct{}

func (benchMedia) Join(ctx context.Context, req MediaRequest) (MediaConn, error) {
	return &fakeConn{req: req, done: make(chan struct{})}, nil
}

// oneConnect runs one client session to its offer (following redirects)
// and disconnects.
func oneConnect(b *testing.B, url string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	extra := ""
	for hops := 0; hops < 4; hops++ {
		ws, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := ws.Write(ctx, websocket.MessageText, []byte(connectMsg("bench", extra))); err != nil {
			b.Fatal(err)
		}
		_, msg, err := ws.Read(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if strings.Contains(string(msg), `"type":"redirect"`) {
			ws.CloseNow()
			i := strings.Index(string(msg), `"location":"`) + len(`"location":"`)
			url = string(msg[i : i+strings.IndexByte(string(msg[i:]), '"')])
			extra = `,"redirect":true`
			continue
		}
		ws.Write(ctx, websocket.MessageText, []byte(`{"type":"answer","sdp":"v=0"}`))
		ws.Write(ctx, websocket.MessageText, []byte(`{"type":"disconnect"}`))
		for {
			if _, _, err := ws.Read(ctx); err != nil {
				break
			}
		}
		ws.CloseNow()
		return
	}
	b.Fatal("redirect loop")
}

func runConnects(b *testing.B, url string) {
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		oneConnect(b, url)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "connects/s")
}

func BenchmarkConnectInProcessAuth(b *testing.B) {
	runConnects(b, benchServer(b, Config{}))
}

func BenchmarkConnectWebhookAuth(b *testing.B) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"allowed":true}`))
	}))
	defer hook.Close()
	runConnects(b, benchServer(b, Config{Authenticator: &Webhook{URL: hook.URL}}))
}

// BenchmarkConnectCluster compares a connect served where it lands with
// one redirected once, in a two-node MemCluster.
func BenchmarkConnectCluster(b *testing.B) {
	mem := NewMemCluster(affinity.DefaultSettings(),
		affinity.Node{Name: "a@127.0.0.1", Connected: true, Capacity: 1 << 20},
		affinity.Node{Name: "b@127.0.0.1", Connected: true, Capacity: 1 << 20})
	urls := map[string]string{}
	for _, n := range []string{"a@127.0.0.1", "b@127.0.0.1"} {
		urls[n] = benchServer(b, Config{NodeName: n, Cluster: mem.Node(n)})
		mem.UpdateNode(n, func(nd *affinity.Node) { nd.SignalingURL = urls[n] })
	}
	// a looks busy, so every new session goes to b.
	mem.Node("a@127.0.0.1").PublishLoad(1000, nil)
	b.Run("direct", func(b *testing.B) { runConnects(b, urls["b@127.0.0.1"]) })
	b.Run("redirected", func(b *testing.B) { runConnects(b, urls["a@127.0.0.1"]) })
}

// BenchmarkConnectParallel is the throughput of one node: 8 clients per
// CPU connecting and disconnecting at once, in-process auth.
func BenchmarkConnectParallel(b *testing.B) {
	url := benchServer(b, Config{})
	b.ReportAllocs()
	b.SetParallelism(8) // 8 × GOMAXPROCS goroutines
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			oneConnect(b, url)
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "connects/s")
}
