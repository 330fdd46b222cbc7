package wire_test

import (
	"errors"
	"fmt"

	"github.com/shoal-sfu/shoal/signaling/wire"
)

func ExampleDecodeClientMessage() {
	m, err := wire.DecodeClientMessage([]byte(`{"type":"connect","role":"sendrecv","channel_id":"sora","metadata":null}`), 0)
	if err != nil {
		panic(err)
	}
	c := m.(*wire.Connect)
	fmt.Println(c.ChannelID, c.Role, c.Audio.Enabled)

	_, err = wire.DecodeClientMessage([]byte(`{"type":"connect","role":"admin","channel_id":"sora"}`), 0)
	var pe *wire.ProtocolError
	if errors.As(err, &pe) {
		fmt.Println(pe.Code, pe.Reason)
	}
	// Output:
	// sora sendrecv true
	// 4491 INVALID-ROLE
}
