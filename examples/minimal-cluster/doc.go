// Command minimal-cluster runs a Shoal cluster and a web page per node.
//
// With no flags it starts three nodes in this process, on 127.0.0.1,
// 127.0.0.2 and 127.0.0.3 (each with its own ports and data directory), runs
// InitCluster, and prints the URL of each node's page:
//
//	go run ./examples/minimal-cluster
//
// With -name it runs one node per process, for deployments across machines
// (see README.md beside this file):
//
//	go run ./examples/minimal-cluster -name node1@10.0.0.1 -key $KEY \
//		-init node1@10.0.0.1,node2@10.0.0.2,node3@10.0.0.3
//
// Ctrl-C (SIGINT) or SIGTERM stops everything cleanly.
//
// main.go holds the flags and the two modes; origins.go the origin guard,
// which logs a page refused for its origin once, with the -origins flag
// that allows it.
package main
