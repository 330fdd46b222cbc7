package sfu

// pion's NACK generator starts a goroutine with a 10 Hz ticker for every
// peer connection as soon as the connection is made, whether or not it
// will ever receive a stream. In an SFU most connections only subscribe:
// at 25 subscribers their tickers woke the process 250 times a second,
// each at its own moment, to find nothing to ask for. lazyNACK starts the
// generator's goroutine only when the connection gets its first remote
// stream (a connection that publishes), and never for one that only
// receives media from the SFU.

import (
	"sync"

	"github.com/pion/interceptor"
)

// lazyNACKFactory wraps the NACK generator's factory.
type lazyNACKFactory struct{ gen interceptor.Factory }

func (f lazyNACKFactory) NewInterceptor(id string) (interceptor.Interceptor, error) {
	i, err := f.gen.NewInterceptor(id)
	if err != nil {
		return nil, err
	}
	return &lazyNACK{Interceptor: i}, nil
}

// lazyNACK passes everything to the generator but BindRTCPWriter, which
// starts its goroutine, and which it calls at the first BindRemoteStream.
type lazyNACK struct {
	interceptor.Interceptor

	mu     sync.Mutex
	w      interceptor.RTCPWriter // nil until pion binds it
	remote bool                   // a remote stream was bound
	bound  bool                   // the generator's BindRTCPWriter was called
}

func (l *lazyNACK) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w = w
	l.bindLocked()
	return w // what the generator returns too: it only keeps the writer
}

func (l *lazyNACK) BindRemoteStream(info *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	l.mu.Lock()
	l.remote = true
	l.bindLocked()
	l.mu.Unlock()
	return l.Interceptor.BindRemoteStream(info, r)
}

func (l *lazyNACK) bindLocked() {
	if l.bound || !l.remote || l.w == nil {
		return
	}
	l.bound = true
	l.Interceptor.BindRTCPWriter(l.w)
}
