// Command multi-cluster runs two Shoal clusters of three nodes on this
// machine, joined in one multi-cluster configuration, and prints a page
// per node: open a page of each region in the same channel and they see
// and hear each other, each served by its own region.
//
//	go run ./examples/multi-cluster
//
// Region "tokyo" runs on 127.0.1.1-3, region "frankfurt" on 127.0.2.1-3,
// each with its own cluster key, both with one multi-cluster key. The
// gossip channel is in this process's memory unless -redis names Redis
// servers (then every node reads and writes them, as separate processes
// would). Each page is minimal-cluster's; /multicluster.json on any node
// shows the configuration, the gateway table and where each channel has
// clients. Ctrl-C stops everything.
//
// With -name it runs one node per process instead (README.md).
//
// main.go holds the flags, the two regions and the HTTP servers;
// main_test.go runs it on fresh loopback addresses.
package main
