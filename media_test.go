package shoal

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/sfu"
	"github.com/shoal-sfu/shoal/signaling"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

// TestAddCandidateMapsEveryField converts a candidate to the parameter type
// of sfu.Connection.AddICECandidate (pion's ICECandidateInit, found by
// reflection since this package may not import pion) and checks that no
// field is lost.
func TestAddCandidateMapsEveryField(t *testing.T) {
	mid, idx, ufrag := "1", uint16(1), "uf"
	in := wire.Candidate{Type: "candidate", Candidate: "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host",
		SDPMid: &mid, SDPMLineIndex: &idx, UsernameFragment: &ufrag}
	var got any
	err := addCandidate(func(v struct {
		Candidate        string  `json:"candidate"`
		SDPMid           *string `json:"sdpMid"`
		SDPMLineIndex    *uint16 `json:"sdpMLineIndex"`
		UsernameFragment *string `json:"usernameFragment"`
	}) error {
		got = v
		return nil
	}, in)
	if err != nil {
		t.Fatal(err)
	}
	// The pion type has exactly these fields and JSON names.
	pt := reflect.TypeOf((*sfu.Connection).AddICECandidate).In(1)
	if gt := reflect.TypeOf(got); pt.NumField() != gt.NumField() {
		t.Fatalf("pion's %v has %d fields, the test's %d", pt, pt.NumField(), gt.NumField())
	}
	for i := range pt.NumField() {
		f, g := pt.Field(i), reflect.TypeOf(got).Field(i)
		if f.Name != g.Name || f.Tag.Get("json") != g.Tag.Get("json") || f.Type != g.Type {
			t.Errorf("field %d: pion %s %v %q, mapped as %s %v %q", i, f.Name, f.Type, f.Tag, g.Name, g.Type, g.Tag)
		}
	}
	v := reflect.ValueOf(got)
	if v.Field(0).String() != in.Candidate || *v.Field(1).Interface().(*string) != mid ||
		*v.Field(2).Interface().(*uint16) != idx || *v.Field(3).Interface().(*string) != ufrag {
		t.Errorf("converted %+v from %+v", got, in)
	}
}

func TestMediaAdapter(t *testing.T) {
	testutil.CheckLeaks(t)
	s, err := sfu.New(sfu.Config{Logger: testutil.Logger(t), MaxConnections: 1,
		Network: sfu.LocalConfig(nil).Network})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := NewMedia(s)
	ctx := testutil.Context(t, 10*time.Second)
	tooBig := 70000
	if _, err := m.Join(ctx, signaling.MediaRequest{ChannelID: "c", Role: wire.RoleSendrecv,
		DataChannels: []wire.DataChannelSpec{{Label: "#x", MaxRetransmits: &tooBig}}}); err == nil {
		t.Error("max_retransmits 70000 accepted")
	}
	conn, err := m.Join(ctx, signaling.MediaRequest{ChannelID: "c", ConnectionID: "C1", Role: wire.RoleSendrecv, Audio: true, Video: true,
		DataChannels: []wire.DataChannelSpec{{Label: "#chat", Direction: "sendonly"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	o := conn.Offer()
	if o.SDP == "" || o.AudioMid == "" || o.VideoMid == "" {
		t.Errorf("offer %+v", o)
	}
	labels := map[string]string{}
	for _, d := range o.DataChannels {
		labels[d.Label] = d.Direction
	}
	if labels["#chat"] != "sendonly" || labels["signaling"] == "" || labels["notify"] == "" {
		t.Errorf("offer data channels %+v", o.DataChannels)
	}
	if _, err := m.Join(ctx, signaling.MediaRequest{ChannelID: "c", Role: wire.RoleRecvonly}); !errors.Is(err, signaling.ErrMediaFull) {
		t.Errorf("second join on a node of capacity 1: %v, want ErrMediaFull", err)
	}
	if err := conn.AddCandidate(wire.Candidate{Candidate: "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host"}); err != nil {
		t.Errorf("AddCandidate: %v", err)
	}
	if err := conn.SetAnswer("not sdp"); err == nil {
		t.Error("a bad answer was accepted")
	}
	conn.Close()
	<-conn.Done()
}
