package signaling_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"

	"github.com/coder/websocket"

	"github.com/shoal-sfu/shoal/signaling"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

// echoMedia is a stand-in for the SFU adapter (shoal.NewMedia).
type echoMedia struct{}

func (echoMedia) Join(ctx context.Context, req signaling.MediaRequest) (signaling.MediaConn, error) {
	return &echoConn{done: make(chan struct{})}, nil
}

type echoConn struct{ done chan struct{} }

func (c *echoConn) Offer() signaling.MediaOffer       { return signaling.MediaOffer{SDP: "v=0\r\n"} }
func (c *echoConn) SetAnswer(string) error            { return nil }
func (c *echoConn) AddCandidate(wire.Candidate) error { return nil }
func (c *echoConn) SendText(string, string) error     { return nil }
func (c *echoConn) Done() <-chan struct{}             { return c.done }
func (c *echoConn) Close() error                      { return nil }

func ExampleServer() {
	srv, err := signaling.New(signaling.Config{
		Media: echoMedia{},
		Authenticator: signaling.AuthFunc(func(ctx context.Context, r *signaling.AuthRequest) (signaling.AuthResult, error) {
			if r.ChannelID == "private" {
				return signaling.AuthResult{Allowed: false, Reason: "NOT-INVITED"}, nil
			}
			return signaling.AuthResult{Allowed: true}, nil
		}),
	})
	if err != nil {
		panic(err)
	}
	hs := httptest.NewServer(srv) // in production: mux.Handle("/signaling", srv)
	defer hs.Close()
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(hs.URL, "http")
	ctx := context.Background()

	for _, ch := range []string{"public", "private"} {
		ws, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			panic(err)
		}
		ws.Write(ctx, websocket.MessageText, []byte(`{"type":"connect","role":"recvonly","channel_id":"`+ch+`"}`))
		_, msg, err := ws.Read(ctx)
		var ce websocket.CloseError
		switch {
		case err == nil:
			fmt.Println(ch+":", strings.Contains(string(msg), `"type":"offer"`))
		case errors.As(err, &ce):
			fmt.Println(ch+":", int(ce.Code), ce.Reason)
		}
		ws.CloseNow()
	}
	// Output:
	// public: true
	// private: 4401 NOT-INVITED
}
