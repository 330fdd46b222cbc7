package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shoal-sfu/shoal/signaling"
)

// TestWebhookThroughShoal asks the webhook through Shoal's own webhook
// client, as a node does.
func TestWebhookThroughShoal(t *testing.T) {
	rules := Rules{Deny: []string{"admin*"}, Token: "s3cret", MaxPerChannel: 3,
		NoAffinity: []string{"lecture-*"}, Affinity: []string{"meeting"}, ClientAffinity: true}
	srv := httptest.NewServer(Handler(rules, slog.New(slog.NewTextHandler(io.Discard, nil))))
	defer srv.Close()
	hook := &signaling.Webhook{URL: srv.URL}
	tok := json.RawMessage(`{"access_token":"s3cret"}`)
	f, tr := false, true
	for _, tc := range []struct {
		name     string
		req      signaling.AuthRequest
		allowed  bool
		reason   string
		affinity *bool
	}{
		{"allowed, affinity unset", signaling.AuthRequest{ChannelID: "room", Metadata: tok}, true, "", nil},
		{"denied channel", signaling.AuthRequest{ChannelID: "admin-1", Metadata: tok}, false, "CHANNEL-DENIED", nil},
		{"no token", signaling.AuthRequest{ChannelID: "room"}, false, "INVALID-ACCESS-TOKEN", nil},
		{"wrong token", signaling.AuthRequest{ChannelID: "room", Metadata: json.RawMessage(`{"access_token":"x"}`)}, false, "INVALID-ACCESS-TOKEN", nil},
		{"metadata not an object", signaling.AuthRequest{ChannelID: "room", Metadata: json.RawMessage(`[1]`)}, false, "INVALID-ACCESS-TOKEN", nil},
		{"channel full", signaling.AuthRequest{ChannelID: "room", Metadata: tok, ChannelConnections: 3}, false, "CHANNEL-FULL", nil},
		{"affinity off by rule", signaling.AuthRequest{ChannelID: "lecture-7", Metadata: tok}, true, "", &f},
		{"affinity on by rule", signaling.AuthRequest{ChannelID: "meeting", Metadata: tok}, true, "", &tr},
		{"affinity asked by client", signaling.AuthRequest{ChannelID: "room",
			Metadata: json.RawMessage(`{"access_token":"s3cret","cluster_affinity":false}`)}, true, "", &f},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := hook.Authenticate(context.Background(), &tc.req)
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if res.Allowed != tc.allowed || res.Reason != tc.reason {
				t.Errorf("allowed=%v reason=%q; want %v %q", res.Allowed, res.Reason, tc.allowed, tc.reason)
			}
			if (res.ClusterAffinity == nil) != (tc.affinity == nil) || (tc.affinity != nil && *res.ClusterAffinity != *tc.affinity) {
				t.Errorf("cluster_affinity=%s; want %s", fmtBool(res.ClusterAffinity), fmtBool(tc.affinity))
			}
		})
	}
	// Not an auth request: 400, which Shoal's webhook client turns into a denial.
	resp, err := http.Post(srv.URL, "application/json", strings.NewReader("nope"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("garbage body: status %d, want 400", resp.StatusCode)
	}
}
