package cluster

import (
	"bytes"
	"testing"

	"github.com/hashicorp/raft"
)

// FuzzDecodeRequest feeds node-to-node request frames (only peers holding
// the cluster key can send them, but they are still checked).
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"op":"apply","cmd":{"op":"claim","channel":"c","node":"a@10.0.0.1","relay":true}}`))
	f.Add([]byte(`{"op":"register","info":{"node_name":"a@10.0.0.1","addr":"10.0.0.1:49011"}}`))
	f.Add([]byte(`{"op":"purge","target":"a@10.0.0.1"}`))
	f.Add([]byte(`{"op":"deregister","info":{"node_name":"t@10.0.0.9","boot":"b1","temporary_node":true}}`))
	f.Add([]byte(`{"op":"load","load":{"node":"a@10.0.0.1","seq":3,"total":2,"channels":{"c":2}}}`))
	f.Add([]byte(`{"op":"x"}`))
	f.Add([]byte{0, 0, 0, 2, '{', '}'})
	f.Fuzz(func(t *testing.T, b []byte) {
		// As a frame on the wire.
		if fr, err := readFrame(bytes.NewReader(b)); err == nil && len(fr) > maxFrame {
			t.Fatal("frame over the limit")
		}
		req, err := decodeRequest(b)
		if err != nil {
			return
		}
		switch req.Op {
		case rpcApply:
			if req.Cmd == nil {
				t.Fatal("apply without command accepted")
			}
		case rpcLoad:
			if req.Load == nil || req.Load.Total < 0 {
				t.Fatal("bad load accepted")
			}
		}
	})
}

// FuzzApplyCommand applies arbitrary log entries to the state machine: it
// must never panic and must keep every owner list non-empty and unique.
func FuzzApplyCommand(f *testing.F) {
	f.Add([]byte(`{"op":"claim","channel":"c","node":"a@10.0.0.1"}`), []byte(`{"op":"claim","channel":"c","node":"b@10.0.0.2","relay":true}`))
	f.Add([]byte(`{"op":"release","channel":"c","node":"a@10.0.0.1"}`), []byte(`{"op":"release_node","node":"a@10.0.0.1"}`))
	f.Add([]byte(`{"op":"set_info","info":{"node_name":"a@10.0.0.1"}}`), []byte(`{"op":"delete_info","node":"a@10.0.0.1"}`))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		m := newFSM(nil)
		for _, d := range [][]byte{a, b, a} {
			m.Apply(&raft.Log{Type: raft.LogCommand, Data: d})
		}
		for ch, owners := range m.copyState().Channels {
			seen := map[string]bool{}
			if len(owners) == 0 {
				t.Fatalf("channel %q kept with no owner", ch)
			}
			for _, o := range owners {
				if seen[o] {
					t.Fatalf("channel %q: owner %q twice", ch, o)
				}
				seen[o] = true
			}
		}
	})
}
