package multicluster

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sampleMessage() Message {
	return Message{Service: "svc", Cluster: "tokyo", From: "n1@10.0.0.1", Kind: KindPush, Data: Data{
		Config: &Configuration{Clusters: []string{"frankfurt", "tokyo"}, Version: 3, Writer: "n1@10.0.0.1",
			Stamp: time.Date(2026, 12, 2, 12, 0, 0, 5, time.UTC)},
		Gateways: table(Gateway{Addr: "10.0.0.1:7946", ClusterID: "tokyo", Node: "n1@10.0.0.1", Relay: "10.0.0.1:49030",
			Status: Active, Version: 4, Channels: []string{"a", "b"}}),
	}}
}

func TestDecodeRoundTrip(t *testing.T) {
	m := sampleMessage()
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("decoded %+v, want %+v", got, m)
	}
	// The order keys survive the trip: a channel that stores the JSON
	// compares what Go compares.
	if got.Data.Config.Order() != m.Data.Config.Order() ||
		got.Data.Gateways["10.0.0.1:7946"].Order() != m.Data.Gateways["10.0.0.1:7946"].Order() {
		t.Fatal("order keys change across encoding")
	}
}

func TestDecodeRefuses(t *testing.T) {
	good, _ := sampleMessage().Encode()
	s := string(good)
	for _, tc := range []struct{ name, in, want string }{
		{"not json", "{", "unexpected EOF"},
		{"trailing", s + "{}", "trailing"},
		{"unknown field", strings.Replace(s, `"svc"`, `"svc2":1,"svc"`, 1), "unknown field"},
		{"comma in cluster", strings.Replace(s, `"cluster":"tokyo","from"`, `"cluster":"to,kyo","from"`, 1), "comma"},
		{"no sender", strings.Replace(s, `"from":"n1@10.0.0.1"`, `"from":""`, 1), "sender"},
		{"bad kind", strings.Replace(s, `"kind":"push"`, `"kind":"pull"`, 1), "kind"},
		{"bad address", strings.Replace(s, `"addr":"10.0.0.1:7946"`, `"addr":"nowhere"`, 1), "gateway address"},
		{"misfiled", strings.Replace(s, `"addr":"10.0.0.1:7946"`, `"addr":"10.0.0.2:7946"`, 1), "filed under"},
		{"bad status", strings.Replace(s, `"status":1`, `"status":7`, 1), "status 7"},
		{"unsorted channels", strings.Replace(s, `["a","b"]`, `["b","a"]`, 1), "not sorted"},
		{"unsorted clusters", strings.Replace(s, `["frankfurt","tokyo"]`, `["tokyo","frankfurt"]`, 1), "not sorted"},
		{"negative version", strings.Replace(s, `"v":4`, `"v":-4`, 1), "cannot unmarshal"},
		{"too big", `"` + strings.Repeat("x", MaxMessageSize) + `"`, "exceeds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.in))
			if err == nil || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Decode = %v, want an ErrMalformed containing %q", err, tc.want)
			}
		})
	}
}

// FuzzDecode: whatever the bytes, Decode does not panic, and what it
// accepts encodes again and decodes to the same message, and merges.
func FuzzDecode(f *testing.F) {
	b, _ := sampleMessage().Encode()
	f.Add(b)
	f.Add([]byte(`{"svc":"","cluster":"a","from":"x","kind":"sync","data":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		again, err := m.Encode()
		if err != nil {
			t.Fatalf("an accepted message does not encode: %v", err)
		}
		m2, err := Decode(again)
		if err != nil {
			t.Fatalf("an accepted message, encoded again, is refused: %v", err)
		}
		if !reflect.DeepEqual(norm(m.Data), norm(m2.Data)) {
			t.Fatalf("round trip changed the data: %+v vs %+v", m.Data, m2.Data)
		}
		var d Data
		d.Merge(m.Data)
		if err := d.Check(); err != nil {
			t.Fatalf("merging an accepted message gives bad data: %v", err)
		}
	})
}
