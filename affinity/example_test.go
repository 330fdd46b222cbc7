package affinity_test

import (
	"fmt"

	"github.com/shoal-sfu/shoal/affinity"
)

// exampleView is three regular nodes of 100 connections with Sora's
// default settings; channel "sora" is held by node3.
func exampleView() affinity.View {
	node := func(name string, conns int) affinity.Node {
		return affinity.Node{
			Name: name + "@10.0.0.1", Connected: true, Capacity: 100, Connections: conns,
			SignalingURL: "wss://" + name + ".example.com/signaling",
			APIURL:       "https://" + name + ".example.com/api",
		}
	}
	return affinity.View{
		Settings:   affinity.DefaultSettings(),
		Nodes:      []affinity.Node{node("node1", 60), node("node2", 20), node("node3", 40)},
		Sessions:   map[string]affinity.Session{"sora": {Owners: []affinity.Owner{{Node: 2, Connections: 8}}}},
		InMajority: true,
	}
}

// A new session goes to the most free node.
func ExamplePlace_newSession() {
	v := exampleView()
	d := affinity.Place(&v, affinity.Request{ChannelID: "hisui", Contacted: "node1@10.0.0.1"})
	fmt.Println(d.Action, d.Node, d.SignalingURL)

	// The client reconnects there with "redirect": true and is served.
	d = affinity.Place(&v, affinity.Request{ChannelID: "hisui", Contacted: d.Node, Redirected: true})
	fmt.Println(d.Action, d.Node)
	// Output:
	// redirect node2@10.0.0.1 wss://node2.example.com/signaling
	// serve node2@10.0.0.1
}

// A connection to an existing session is gathered on the session's node,
// unless the auth hook turned affinity off for it.
func ExamplePlace_existingSession() {
	v := exampleView()
	d := affinity.Place(&v, affinity.Request{ChannelID: "sora", Contacted: "node1@10.0.0.1"})
	fmt.Println(d.Action, d.Node)

	d = affinity.Place(&v, affinity.Request{ChannelID: "sora", Contacted: "node1@10.0.0.1", Affinity: affinity.AffinityOff})
	fmt.Println(d.Action, d.Node)
	// Output:
	// redirect node3@10.0.0.1
	// serve node1@10.0.0.1
}

// A full node sends clients elsewhere; without relay, a full session node
// refuses, and the reason is an error the signaling layer shows the client.
func ExamplePlace_fullNode() {
	v := exampleView()
	v.Nodes[2].Connections = 100 // node3, holding "sora", is full

	d := affinity.Place(&v, affinity.Request{ChannelID: "sora", Contacted: "node3@10.0.0.1"})
	fmt.Println(d.Action, d.Node)

	v.Settings.Relay = false
	d = affinity.Place(&v, affinity.Request{ChannelID: "sora", Contacted: "node1@10.0.0.1"})
	fmt.Println(d.Action, d.Err())
	// Output:
	// redirect node2@10.0.0.1
	// refuse affinity: the node holding the session is full and relay is off: node3@10.0.0.1
}

// When a regular node fails, the others take its capacity until it returns.
func ExampleEffectiveCapacities() {
	v := exampleView()
	fmt.Println(affinity.EffectiveCapacities(&v, nil))
	v.Nodes[1].Connected = false
	fmt.Println(affinity.EffectiveCapacities(&v, nil))
	// Output:
	// [100 100 100]
	// [150 0 150]
}
