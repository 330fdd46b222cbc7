// Package httpjson writes JSON answers for the node's HTTP APIs (the admin
// API in signaling, the multi-cluster admin handler in the root package),
// so that they encode answers and errors alike.
//
// Files:
//   - httpjson.go: Write and Error, the JSON answers and errors of the
//     node's HTTP APIs.
package httpjson
