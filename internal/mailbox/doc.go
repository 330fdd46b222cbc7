// Package mailbox is the queue between a producer that must never wait and
// the one goroutine that consumes: Put appends under a short lock and wakes
// the consumer through a one-slot channel; the consumer takes everything
// queued at once. Shoal's event subscriptions, the SFU's callback queue and
// a signaling session's outbound queue are all built on it.
//
// The file mailbox.go holds the whole package.
package mailbox
