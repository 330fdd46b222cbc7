package shoal_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	shoal "github.com/shoal-sfu/shoal"
	"github.com/shoal-sfu/shoal/sfu"
	"github.com/shoal-sfu/shoal/signaling"
)

// A Node from one Config; mount its handlers on your own HTTP server. With
// Cluster on, set ClusterKey, the external URLs and DataDir, then run
// InitCluster once (see examples/minimal-cluster).
func ExampleNode() {
	cfg := shoal.DefaultConfig() // Sora's defaults: relay and affinity on, threshold 20
	cfg.NodeName = "solo@127.0.0.1"
	cfg.Authenticator = signaling.AllowAll // development only: a signaling.Webhook in production
	cfg.Logger = slog.New(slog.DiscardHandler)
	n, err := shoal.New(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer n.Close()
	if err := n.Start(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle("/signaling", n.SignalingHandler())
	mux.Handle("/api/", http.StripPrefix("/api", n.AdminHandler()))
	// http.ListenAndServe(":5000", mux)
	fmt.Println(n.Name(), "serving:", n.Ready())
	// Output: solo@127.0.0.1 serving: true
}

// The same single node wired by hand from the packages, which is what Node
// does: an SFU, the adapter from it to signaling's Media, and the signaling
// server. A clustered node adds a cluster.Node (signaling.Config.Cluster,
// the admin API's operations), a relay.Relay fed by relay.NewSFULocal, and a
// cluster.Node.Subscribe callback that opens the relay of each channel with
// the channel's other owners and drops every connection when the majority
// is lost (see follow.go).
func Example_byHand() {
	logger := slog.New(slog.DiscardHandler)
	s, err := sfu.New(sfu.Config{Logger: logger})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	sig, err := signaling.New(signaling.Config{
		Logger:        logger,
		NodeName:      "solo@127.0.0.1",
		Authenticator: signaling.AllowAll,
		Media:         shoal.NewMedia(s),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sig.Close()
	mux := http.NewServeMux()
	mux.Handle("/signaling", sig)
	fmt.Println("connections:", len(sig.Connections("")))
	// Output: connections: 0
}
