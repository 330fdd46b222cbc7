package sfu

// pion's NACK generator and receiver reports each start a goroutine with a
// ticker (10 Hz and 1 Hz) for every peer connection as soon as the
// connection is made, whether or not it will ever receive a stream, though
// both only ever write about streams received. In an SFU most connections
// only subscribe: at 25 subscribers their tickers woke the process 275
// times a second, each at its own moment, to find nothing to do. lazyRecv
// starts such an interceptor's goroutine only when the connection gets its
// first remote stream (a connection that publishes), never for one that
// only receives media from the SFU.

import (
	"sync"

	"github.com/pion/interceptor"
)

// lazyRecvFactory wraps the factory of an interceptor whose
// BindRTCPWriter starts a goroutine that only writes about remote streams.
type lazyRecvFactory struct{ f interceptor.Factory }

func (f lazyRecvFactory) NewInterceptor(id string) (interceptor.Interceptor, error) {
	i, err := f.f.NewInterceptor(id)
	if err != nil {
		return nil, err
	}
	return &lazyRecv{Interceptor: i}, nil
}

// lazyRecv passes everything to the interceptor but BindRTCPWriter, which
// it calls at the first BindRemoteStream.
type lazyRecv struct {
	interceptor.Interceptor

	mu     sync.Mutex
	w      interceptor.RTCPWriter // nil until pion binds it
	remote bool                   // a remote stream was bound
	bound  bool                   // the interceptor's BindRTCPWriter was called
}

func (l *lazyRecv) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w = w
	l.bindLocked()
	return w // what both interceptors return too: they only keep the writer
}

func (l *lazyRecv) BindRemoteStream(info *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	l.mu.Lock()
	l.remote = true
	l.bindLocked()
	l.mu.Unlock()
	return l.Interceptor.BindRemoteStream(info, r)
}

func (l *lazyRecv) bindLocked() {
	if l.bound || !l.remote || l.w == nil {
		return
	}
	l.bound = true
	l.Interceptor.BindRTCPWriter(l.w)
}
