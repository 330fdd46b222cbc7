package cluster_test

import (
	"context"
	"fmt"

	"github.com/shoal-sfu/shoal/cluster"
)

func ExampleParseNodeName() {
	nn, err := cluster.ParseNodeName("sfu1@10.0.0.1")
	fmt.Println(nn.Name, nn.Host, err)
	_, err = cluster.ParseNodeName("sfu1@localhost")
	fmt.Println(err)
	// Output:
	// sfu1 10.0.0.1 <nil>
	// cluster: node_name "sfu1@localhost": host must contain a dot or be an IP address
}

// A node with clustering off is a plain SFU: it serves alone and keeps its
// channels' sessions locally.
func ExampleNode() {
	n, err := cluster.New(cluster.Config{NodeName: "solo@10.0.0.1", MaxConnections: 100})
	if err != nil {
		panic(err)
	}
	defer n.Close()
	ctx := context.Background()
	if err := n.Start(ctx); err != nil {
		panic(err)
	}
	owners, _ := n.ClaimChannel(ctx, "sora")
	n.PublishLoad(1, map[string]int{"sora": 1})
	v := n.Snapshot()
	fmt.Println(owners, v.InMajority, len(v.Nodes), v.Nodes[0].Capacity)
	// Output:
	// [solo@10.0.0.1] true 1 100
}
