package signaling

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/signaling/wire"
)

func TestWebhook(t *testing.T) {
	var got AuthRequest
	answer := `{"allowed":true,"cluster_affinity":false,"metadata":{"room":"a"}}`
	status := 200
	delay := time.Duration(0)
	var mu sync.Mutex // the handler of a timed-out call may still run during the next case
	set := func(a string, s int, d time.Duration) {
		mu.Lock()
		answer, status, delay = a, s, d
		mu.Unlock()
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		answer, status, delay := answer, status, delay
		mu.Unlock()
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Authorization") != "Bearer k" {
			t.Errorf("request %s %v", r.Method, r.Header)
		}
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		err := json.Unmarshal(b, &got)
		mu.Unlock()
		if err != nil {
			t.Errorf("webhook body %s: %v", b, err)
		}
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
		w.WriteHeader(status)
		io.WriteString(w, answer)
	}))
	defer srv.Close()
	wh := &Webhook{URL: srv.URL, Timeout: 200 * time.Millisecond, Header: http.Header{"Authorization": {"Bearer k"}}}
	req := &AuthRequest{ChannelID: "c", ConnectionID: "X", Role: wire.RoleSendrecv, NodeName: "a@127.0.0.1", Metadata: json.RawMessage(`{"t":1}`)}

	res, err := wh.Authenticate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Allowed || res.ClusterAffinity == nil || *res.ClusterAffinity || string(res.Metadata) != `{"room":"a"}` {
		t.Errorf("result %+v", res)
	}
	mu.Lock()
	if got.ChannelID != "c" || got.NodeName != "a@127.0.0.1" || string(got.Metadata) != `{"t":1}` {
		t.Errorf("webhook got %+v", got)
	}

	mu.Unlock()
	set(`{"allowed":false,"reason":"BANNED"}`, 200, 0)
	res, err = wh.Authenticate(context.Background(), req)
	if err != nil || res.Allowed || res.Reason != "BANNED" {
		t.Errorf("deny: %+v %v", res, err)
	}

	for _, tc := range []struct {
		name   string
		answer string
		status int
		delay  time.Duration
		reason string
	}{
		{"timeout", `{"allowed":true}`, 200, time.Second, "AUTH-WEBHOOK-TIMEOUT"},
		{"status", `{"allowed":true}`, 500, 0, "AUTH-WEBHOOK-STATUS"},
		{"garbage", `<html>`, 200, 0, "AUTH-WEBHOOK-BAD-RESPONSE"},
		{"no allowed", `{"ok":true}`, 200, 0, "AUTH-WEBHOOK-BAD-RESPONSE"},
		{"allowed wrong type", `{"allowed":"yes"}`, 200, 0, "AUTH-WEBHOOK-BAD-RESPONSE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set(tc.answer, tc.status, tc.delay)
			_, err := wh.Authenticate(context.Background(), req)
			var ae *AuthError
			if !errors.As(err, &ae) || ae.Reason != tc.reason {
				t.Fatalf("got %v, want AuthError %s", err, tc.reason)
			}
		})
	}

	wh.URL = "http://127.0.0.1:1/" // nothing listens
	if _, err := wh.Authenticate(context.Background(), req); err == nil {
		t.Error("unreachable webhook allowed the connection")
	}
}

func FuzzDecodeAuthResult(f *testing.F) {
	for _, s := range []string{
		`{"allowed":true}`,
		`{"allowed":false,"reason":"x"}`,
		`{"allowed":true,"cluster_affinity":true,"metadata":{"a":[1,2]}}`,
		`{"allowed":null}`,
		`[]`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := DecodeAuthResult(b)
		if err != nil {
			var ae *AuthError
			if !errors.As(err, &ae) || ae.Reason == "" {
				t.Fatalf("error %v is not an *AuthError with a reason", err)
			}
			if res.Allowed {
				t.Fatal("an error allowed the connection")
			}
			return
		}
		if len(res.Metadata) > 0 && !json.Valid(res.Metadata) {
			t.Fatalf("invalid metadata kept: %q", res.Metadata)
		}
	})
}
