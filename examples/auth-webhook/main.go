package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path"
	"strings"
	"time"

	"github.com/shoal-sfu/shoal/signaling"
)

// Rules decide connects. The zero value allows everything.
type Rules struct {
	Deny           []string // channel_id patterns denied
	Token          string   // required metadata.access_token, if set
	MaxPerChannel  int      // 0: no limit
	NoAffinity     []string // channel_id patterns with cluster_affinity false
	Affinity       []string // channel_id patterns with cluster_affinity true
	ClientAffinity bool     // honour metadata.cluster_affinity
}

func match(patterns []string, s string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, s); ok {
			return true
		}
	}
	return false
}

// Decide answers one auth request.
func (r Rules) Decide(req *signaling.AuthRequest) signaling.AuthResult {
	if match(r.Deny, req.ChannelID) {
		return signaling.AuthResult{Reason: "CHANNEL-DENIED"}
	}
	var md struct {
		AccessToken     string `json:"access_token"`
		ClusterAffinity *bool  `json:"cluster_affinity"`
	}
	if len(req.Metadata) > 0 {
		_ = json.Unmarshal(req.Metadata, &md) // metadata that is not an object carries neither
	}
	if r.Token != "" && md.AccessToken != r.Token {
		return signaling.AuthResult{Reason: "INVALID-ACCESS-TOKEN"}
	}
	if r.MaxPerChannel > 0 && req.ChannelConnections >= r.MaxPerChannel {
		return signaling.AuthResult{Reason: "CHANNEL-FULL"}
	}
	res := signaling.AuthResult{Allowed: true}
	switch {
	case match(r.NoAffinity, req.ChannelID):
		res.ClusterAffinity = new(bool)
	case match(r.Affinity, req.ChannelID):
		t := true
		res.ClusterAffinity = &t
	case r.ClientAffinity && md.ClusterAffinity != nil:
		res.ClusterAffinity = md.ClusterAffinity
	}
	return res
}

// Handler serves the webhook: POST with an AuthRequest, 200 with the
// AuthResult. A request that is not one is a 400 (which Shoal treats as a
// denial).
func Handler(r Rules, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, hr *http.Request) {
		if hr.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			http.Error(w, "use POST", http.StatusMethodNotAllowed)
			return
		}
		var req signaling.AuthRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, hr.Body, 1<<20))
		if err := dec.Decode(&req); err != nil {
			http.Error(w, "body is not an auth request: "+err.Error(), http.StatusBadRequest)
			return
		}
		res := r.Decide(&req)
		log.Info("auth", "channel_id", req.ChannelID, "connection_id", req.ConnectionID, "node", req.NodeName,
			"redirect", req.Redirect, "allowed", res.Allowed, "reason", res.Reason, "cluster_affinity", fmtBool(res.ClusterAffinity))
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(res)
	})
}

func fmtBool(b *bool) string {
	if b == nil {
		return "unset"
	}
	return fmt.Sprint(*b)
}

func list(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func main() {
	var (
		listen, deny, noAff, aff string
		r                        Rules
	)
	flag.StringVar(&listen, "listen", "127.0.0.1:8090", "address to listen on; the webhook is POST /auth")
	flag.StringVar(&deny, "deny", "", "comma-separated channel_id patterns to deny")
	flag.StringVar(&r.Token, "token", "", "required metadata.access_token (empty: none)")
	flag.IntVar(&r.MaxPerChannel, "max-per-channel", 0, "deny a connect to a channel that already has this many connections in the cluster (0: no limit)")
	flag.StringVar(&noAff, "no-affinity", "", "comma-separated channel_id patterns whose connections get cluster_affinity false")
	flag.StringVar(&aff, "affinity", "", "comma-separated channel_id patterns whose connections get cluster_affinity true")
	flag.BoolVar(&r.ClientAffinity, "client-affinity", false, "let clients ask for cluster_affinity in metadata")
	flag.Parse()
	r.Deny, r.NoAffinity, r.Affinity = list(deny), list(noAff), list(aff)
	for _, p := range append(append(append([]string{}, r.Deny...), r.NoAffinity...), r.Affinity...) {
		if _, err := path.Match(p, ""); err != nil {
			fmt.Fprintf(os.Stderr, "auth-webhook: bad pattern %q: %v\n", p, err)
			os.Exit(2)
		}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	mux := http.NewServeMux()
	mux.Handle("/auth", Handler(r, log))
	srv := &http.Server{Addr: listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	fmt.Printf("auth webhook on http://%s/auth\n", listen)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("auth-webhook", "err", err)
		os.Exit(1)
	}
}
