package signaling

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/shoal-sfu/shoal/affinity"
	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/signaling/wire"
)

type fakeNodeStatus struct {
	Name      string `json:"node_name"`
	Connected bool   `json:"connected"`
}

type fakeChannelStatus struct {
	ChannelID string `json:"channel_id"`
}

// fakeAdmin records calls and reads its view from a MemCluster node.
type fakeAdmin struct {
	Cluster
	mu    sync.Mutex
	calls []string
	err   error
}

var _ Admin[fakeNodeStatus, fakeChannelStatus] = (*fakeAdmin)(nil)

func (a *fakeAdmin) record(s string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, s)
	return a.err
}

func (a *fakeAdmin) InitCluster(ctx context.Context, names []string) ([]string, error) {
	return names, a.record("init " + strings.Join(names, ","))
}

func (a *fakeAdmin) RegisterClusterNode(ctx context.Context, contact string) ([]string, error) {
	return []string{contact, "me@127.0.0.1"}, a.record("register " + contact)
}

func (a *fakeAdmin) PurgeClusterNode(ctx context.Context, target string) error {
	return a.record("purge " + target)
}

func (a *fakeAdmin) ListClusterNodes(ctx context.Context) ([]fakeNodeStatus, error) {
	return []fakeNodeStatus{{"a@127.0.0.1", true}}, a.record("nodes")
}

func (a *fakeAdmin) ListClusterChannels(ctx context.Context) ([]fakeChannelStatus, error) {
	return nil, a.record("channels")
}

func (a *fakeAdmin) SetMode(ctx context.Context, m affinity.Mode, reason string) error {
	return a.record("mode " + m.String() + " " + reason)
}

// fakeChannels serves one connection, C1 of client alice, in any channel.
type fakeChannels struct {
	mu           sync.Mutex
	disconnected []string
	pushed       []string
}

func (f *fakeChannels) Connections(ch string) []ConnectionInfo {
	return []ConnectionInfo{{ChannelID: ch, ConnectionID: "C1", Role: wire.RoleSendonly}}
}

func (f *fakeChannels) DisconnectChannel(ch, reason string) (int, error) {
	return f.disconnect(ch+"/"+reason, true)
}

func (f *fakeChannels) DisconnectConnection(ch, conn, reason string) (int, error) {
	return f.disconnect(ch+"/conn:"+conn+"/"+reason, conn == "C1")
}

func (f *fakeChannels) DisconnectClient(ch, client, reason string) (int, error) {
	return f.disconnect(ch+"/client:"+client+"/"+reason, client == "alice")
}

func (f *fakeChannels) disconnect(what string, found bool) (int, error) {
	return f.record(&f.disconnected, what, found)
}

func (f *fakeChannels) PushChannel(ch string, data json.RawMessage) (int, error) {
	return f.push(ch+"/"+string(data), true)
}

func (f *fakeChannels) PushConnection(ch, conn string, data json.RawMessage) (int, error) {
	return f.push(ch+"/conn:"+conn+"/"+string(data), conn == "C1")
}

func (f *fakeChannels) PushClient(ch, client string, data json.RawMessage) (int, error) {
	return f.push(ch+"/client:"+client+"/"+string(data), client == "alice")
}

func (f *fakeChannels) push(what string, found bool) (int, error) {
	return f.record(&f.pushed, what, found)
}

// record appends what to the list to when the connection was found, and
// answers how many it acted on.
func (f *fakeChannels) record(to *[]string, what string, found bool) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !found {
		return 0, nil
	}
	*to = append(*to, what)
	return 1, nil
}

func post(t *testing.T, h http.Handler, target, body string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	if target != "" {
		r.Header.Set("x-sora-target", target)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	b, _ := io.ReadAll(w.Result().Body)
	return w.Code, strings.TrimSpace(string(b)), w.Result().Header
}

// listMine is fakeChannels' connection listed in Sora's shape.
const listMine = `[{"channel_id":"mine","connection_id":"C1","role":"sendonly","multistream":true,"simulcast":false,"spotlight":false,` +
	`"created_time":0,"audio":false,"video":false,"node_name":"a@127.0.0.1"}]`

func TestAdminAPI(t *testing.T) {
	mem := NewMemCluster(affinity.DefaultSettings(),
		affinity.Node{Name: "a@127.0.0.1", Connected: true, Capacity: 10, APIURL: "http://a.example:3000/"},
		affinity.Node{Name: "b@127.0.0.1", Connected: true, Capacity: 10, APIURL: "http://b.example:3000/"})
	if _, err := mem.Node("b@127.0.0.1").ClaimChannel(context.Background(), "held-by-b"); err != nil {
		t.Fatal(err)
	}
	admin := &fakeAdmin{Cluster: mem.Node("a@127.0.0.1")}
	chans := &fakeChannels{}
	h, err := NewAdminHandler(admin, AdminConfig{NodeName: "a@127.0.0.1", Channels: chans, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		target, body string
		code         int
		want         string
	}{
		{TargetInitCluster, `{"node_name_list":["a@127.0.0.1","b@127.0.0.1"]}`, 200, `{"node_name_list":["a@127.0.0.1","b@127.0.0.1"]}`},
		{TargetRegisterClusterNode, `{"contact_node_name":"b@127.0.0.1"}`, 200, `{"node_name_list":["b@127.0.0.1","me@127.0.0.1"]}`},
		{TargetPurgeClusterNode, `{"target_node_name":"c@127.0.0.1"}`, 200, `{"target_node_name":"c@127.0.0.1"}`},
		{TargetListClusterNodes, ``, 200, `[{"node_name":"a@127.0.0.1","connected":true}]`},
		{TargetListClusterChannels, `{}`, 200, `[]`},
		{TargetSetNodeMode, `{"mode":"block_new_session","reason":"drain"}`, 200, `{"mode":"block_new_session","node_name":"a@127.0.0.1"}`},
		{TargetListChannelConnections, `{"channel_id":"mine"}`, 200, listMine},
		{TargetListChannelConnectionsShoal, `{"channel_id":"mine"}`, 200, listMine}, // the deprecated alias
		{TargetDisconnectChannel, `{"channel_id":"mine","reason":{"why":"x"}}`, 200, `{"channel_id":"mine","disconnected":1,"nodes":[{"node_name":"a@127.0.0.1","disconnected":1}]}`},
		{TargetDisconnectConnection, `{"channel_id":"mine","connection_id":"C1","reason":"BYE"}`, 200,
			`{"channel_id":"mine","connection_id":"C1","disconnected":1,"nodes":[{"node_name":"a@127.0.0.1","disconnected":1}]}`},
		{TargetDisconnectConnection, `{"channel_id":"mine","connection_id":"C9"}`, 404,
			`{"channel_id":"mine","connection_id":"C9","disconnected":0,"nodes":[{"node_name":"a@127.0.0.1","disconnected":0}],"error":"no connection \"C9\" in channel \"mine\" on any node (1 asked)"}`},
		{TargetDisconnectClient, `{"channel_id":"mine","client_id":"alice"}`, 200,
			`{"channel_id":"mine","client_id":"alice","disconnected":1,"nodes":[{"node_name":"a@127.0.0.1","disconnected":1}]}`},
		{TargetDisconnectClient, `{"channel_id":"mine","client_id":"bob"}`, 404,
			`{"channel_id":"mine","client_id":"bob","disconnected":0,"nodes":[{"node_name":"a@127.0.0.1","disconnected":0}],"error":"no connection with client_id \"bob\" in channel \"mine\" on any node (1 asked)"}`},
		{TargetPushChannel, `{"channel_id":"mine","data":{"n": 1}}`, 200, `{"channel_id":"mine","pushed":1,"nodes":[{"node_name":"a@127.0.0.1","pushed":1}]}`},
		{TargetPushConnection, `{"channel_id":"mine","connection_id":"C1","data":{}}`, 200,
			`{"channel_id":"mine","connection_id":"C1","pushed":1,"nodes":[{"node_name":"a@127.0.0.1","pushed":1}]}`},
		{TargetPushConnection, `{"channel_id":"mine","connection_id":"C9","data":{}}`, 404,
			`{"channel_id":"mine","connection_id":"C9","pushed":0,"nodes":[{"node_name":"a@127.0.0.1","pushed":0}],"error":"no connection \"C9\" in channel \"mine\" on any node (1 asked)"}`},
		{TargetPushClient, `{"channel_id":"mine","client_id":"alice","data":{"x":[1]}}`, 200,
			`{"channel_id":"mine","client_id":"alice","pushed":1,"nodes":[{"node_name":"a@127.0.0.1","pushed":1}]}`},
		// Bad input.
		{"", `{}`, 400, `{"error":"missing x-sora-target header"}`},
		{"Sora_20990101.Nope", `{}`, 400, `{"error":"unknown x-sora-target \"Sora_20990101.Nope\""}`},
		{TargetInitCluster, `{"node_name_list":"a"}`, 400, `{"error":"field \"node_name_list\" must be an array of strings"}`},
		{TargetInitCluster, `{}`, 400, `{"error":"missing field \"node_name_list\""}`},
		{TargetInitCluster, `{"node_name_list":[]}`, 400, `{"error":"field \"node_name_list\" is empty"}`},
		{TargetInitCluster, `{"node_name_list":["a@127.0.0.1","b@127.0.0.1","a@127.0.0.1"]}`, 400, `{"error":"node_name_list names \"a@127.0.0.1\" twice"}`},
		{TargetRegisterClusterNode, `{"contact_node_name":"a@127.0.0.1"}`, 400, `{"error":"contact_node_name a@127.0.0.1 is this node: name a node of the cluster to join"}`},
		{TargetRegisterClusterNode, `{"contact_node_name":5}`, 400, `{"error":"field \"contact_node_name\" must be a string"}`},
		{TargetPurgeClusterNode, `not json`, 400, `{"error":"body is not a JSON object"}`},
		{TargetSetNodeMode, `{"mode":"off"}`, 400, `{"error":"field \"mode\": \"off\" is not normal, block_new_session or block_new_connection"}`},
		{TargetDisconnectChannel, `{}`, 400, `{"error":"missing field \"channel_id\""}`},
		{TargetDisconnectChannel, `{"channel_id":"` + strings.Repeat("x", 256) + `"}`, 400, `{"error":"channel_id is 256 bytes, over the limit of 255"}`},
		{TargetPushChannel, `{"channel_id":"` + strings.Repeat("x", 256) + `","data":{}}`, 400, `{"error":"channel_id is 256 bytes, over the limit of 255"}`},
		{TargetPushChannel, `{"channel_id":"mine"}`, 400, `{"error":"missing field \"data\""}`},
		{TargetPushChannel, `{"channel_id":"mine","data":null}`, 400, `{"error":"missing field \"data\""}`},
		{TargetPushChannel, `{"channel_id":"mine","data":"hello"}`, 400, `{"error":"field \"data\" must be a JSON object"}`},
		{TargetPushChannel, `{"channel_id":"mine","data":[{}]}`, 400, `{"error":"field \"data\" must be a JSON object"}`},
		{TargetPushChannel, `{"data":{}}`, 400, `{"error":"missing field \"channel_id\""}`},
		{TargetPushConnection, `{"channel_id":"mine","data":{}}`, 400, `{"error":"missing field \"connection_id\""}`},
		{TargetPushConnection, `{"channel_id":"mine","connection_id":"","data":{}}`, 400, `{"error":"field \"connection_id\" is empty"}`},
		{TargetPushConnection, `{"channel_id":"mine","connection_id":7,"data":{}}`, 400, `{"error":"field \"connection_id\" must be a string"}`},
		{TargetPushClient, `{"channel_id":"mine","data":{}}`, 400, `{"error":"missing field \"client_id\""}`},
		{TargetDisconnectConnection, `{"channel_id":"mine"}`, 400, `{"error":"missing field \"connection_id\""}`},
		{TargetDisconnectConnection, `{"channel_id":"mine","connection_id":"` + strings.Repeat("x", 256) + `"}`, 400, `{"error":"connection_id is 256 bytes, over the limit of 255"}`},
		{TargetDisconnectClient, `{"channel_id":"mine","client_id":"` + strings.Repeat("é", 128) + `"}`, 400, `{"error":"client_id is 256 bytes, over the limit of 255"}`},
	} {
		code, body, _ := post(t, h, tc.target, tc.body)
		if code != tc.code || body != tc.want {
			t.Errorf("%s %s: %d %s, want %d %s", tc.target, tc.body, code, body, tc.code, tc.want)
		}
	}
	if want := []string{`mine/{"why":"x"}`, "mine/conn:C1/BYE", "mine/client:alice/"}; !slices.Equal(chans.disconnected, want) {
		t.Errorf("disconnected %q, want %q", chans.disconnected, want)
	}
	if want := []string{`mine/{"n": 1}`, "mine/conn:C1/{}", `mine/client:alice/{"x":[1]}`}; !slices.Equal(chans.pushed, want) {
		t.Errorf("pushed %q, want %q", chans.pushed, want)
	}

	// A channel held by another node only: 307 to its API.
	code, _, hdr := post(t, h, TargetDisconnectChannel, `{"channel_id":"held-by-b"}`)
	if code != http.StatusTemporaryRedirect || hdr.Get("Location") != "http://b.example:3000/" {
		t.Errorf("307: got %d Location %q", code, hdr.Get("Location"))
	}
	if len(chans.disconnected) != 3 {
		t.Error("a channel held elsewhere was disconnected here")
	}
	// Per-connection operations too: the connection may be on any node
	// holding the channel, and this one holds none of it.
	for _, tg := range []string{TargetDisconnectConnection, TargetPushConnection} {
		code, _, hdr := post(t, h, tg, `{"channel_id":"held-by-b","connection_id":"C1","data":{}}`)
		if code != http.StatusTemporaryRedirect || hdr.Get("Location") != "http://b.example:3000/" {
			t.Errorf("%s: got %d Location %q, want 307", tg, code, hdr.Get("Location"))
		}
	}

	// Operation errors.
	admin.err = fmt.Errorf("cluster: gone: %w", net.ErrClosed)
	if code, _, _ := post(t, h, TargetPurgeClusterNode, `{"target_node_name":"c@127.0.0.1"}`); code != 503 {
		t.Errorf("closed node: %d, want 503", code)
	}
	admin.err = errors.New("cluster: node is alive")
	if code, body, _ := post(t, h, TargetPurgeClusterNode, `{"target_node_name":"c@127.0.0.1"}`); code != 500 || !strings.Contains(body, "node is alive") {
		t.Errorf("failed op: %d %s", code, body)
	}
	// An error carrying its status (HTTPStatuser), wrapped or not, is
	// answered with it; a status out of 4xx-5xx is ignored.
	for _, tc := range []struct {
		err  error
		code int
	}{
		{statusErr{"no such node", 404}, 404},
		{fmt.Errorf("purge c: %w", statusErr{"node is alive", 409}), 409},
		{fmt.Errorf("purge: %w", statusErr{"not in the majority", 503}), 503},
		{statusErr{"odd", 200}, 500},
	} {
		admin.err = tc.err
		code, body, _ := post(t, h, TargetPurgeClusterNode, `{"target_node_name":"c@127.0.0.1"}`)
		if want, _ := json.Marshal(map[string]string{"error": tc.err.Error()}); code != tc.code || body != string(want) {
			t.Errorf("%v: %d %s, want %d %s", tc.err, code, body, tc.code, want)
		}
	}

	// Method, path, body size.
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 405 {
		t.Errorf("GET: %d", w.Code)
	}
	if code, _, _ := post(t, h, TargetListClusterNodes, strings.Repeat(" ", DefaultMaxAdminBody+1)); code != 413 {
		t.Errorf("big body: %d", code)
	}
}

func TestAdminTokenAndCORS(t *testing.T) {
	mem := NewMemCluster(affinity.DefaultSettings(), affinity.Node{Name: "a@127.0.0.1", Connected: true, Capacity: 10})
	admin := &fakeAdmin{Cluster: mem.Node("a@127.0.0.1")}
	h, err := NewAdminHandler(admin, AdminConfig{NodeName: "a@127.0.0.1", Token: "s3cret", Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if code, _, hdr := post(t, h, TargetListClusterNodes, ``); code != 401 || hdr.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("no token: %d, CORS %q", code, hdr.Get("Access-Control-Allow-Origin"))
	}
	if code, _, _ := post(t, h, TargetListClusterNodes, ``, "Authorization", "Bearer wrong"); code != 401 {
		t.Errorf("wrong token: %d", code)
	}
	if code, _, _ := post(t, h, TargetListClusterNodes, ``, "Authorization", "Bearer s3cret"); code != 200 {
		t.Errorf("token: %d", code)
	}
	h, _ = NewAdminHandler(admin, AdminConfig{NodeName: "a@127.0.0.1", CORSOrigin: "*"})
	r := httptest.NewRequest(http.MethodOptions, "/", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 204 || w.Header().Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(w.Header().Get("Access-Control-Allow-Headers"), "x-sora-target") {
		t.Errorf("preflight: %d %v", w.Code, w.Header())
	}
	if _, err := NewAdminHandler[fakeNodeStatus, fakeChannelStatus](admin, AdminConfig{}); err == nil {
		t.Error("NewAdminHandler without NodeName")
	}
}

// FuzzDecodeAdminRequest: any target and body give a request or an
// *AdminError with a 4xx status; nothing panics, and an accepted request
// has the fields its target needs.
func FuzzDecodeAdminRequest(f *testing.F) {
	for _, s := range [][2]string{
		{TargetInitCluster, `{"node_name_list":["a@10.0.0.1","b@10.0.0.2"]}`},
		{TargetRegisterClusterNode, `{"contact_node_name":"a@10.0.0.1"}`},
		{TargetPurgeClusterNode, `{"target_node_name":"c@10.0.0.3"}`},
		{TargetListClusterNodes, ``},
		{TargetListClusterChannels, `{}`},
		{TargetSetNodeMode, `{"mode":"normal","reason":"x"}`},
		{TargetDisconnectChannel, `{"channel_id":"sora","reason":{"a":1}}`},
		{TargetListChannelConnections, `{"channel_id":"sora"}`},
		{TargetListChannelConnectionsShoal, `{"channel_id":"sora"}`},
		{TargetDisconnectConnection, `{"channel_id":"sora","connection_id":"C1","reason":"x"}`},
		{TargetDisconnectClient, `{"channel_id":"sora","client_id":"alice"}`},
		{TargetPushChannel, `{"channel_id":"sora","data":{"a":[1,{"b":null}]}}`},
		{TargetPushConnection, `{"channel_id":"sora","connection_id":"C1","data":{}}`},
		{TargetPushClient, `{"channel_id":"sora","client_id":"alice","data":{"x":"y"}}`},
		{TargetPushChannel, `{"channel_id":"sora","data":[1]}`},
		{TargetRequestSimulcastRid, `{"channel_id":"sora","receiver_connection_id":"C1","rid":"r1"}`},
		{TargetRequestSimulcastRid, `{"channel_id":"sora","receiver_connection_id":"C1","sender_connection_id":"C2","auto":true}`},
		{TargetRequestSimulcastRid, `{"channel_id":"sora","receiver_connection_id":"C1","rid":"r3"}`},
		{TargetRequestRtpStream, `{"channel_id":"sora","recv_connection_id":"C1","send_connection_id":"C2","rid":"none"}`},
		{TargetGetStatsReport, `{"local":false}`},
		{TargetGetStatsAllConnections, `{"cluster":true,"local":true}`},
		{TargetGetLicense, ``},
		{"x", `[`},
	} {
		f.Add(s[0], []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, target string, body []byte) {
		req, err := DecodeAdminRequest(target, body)
		if err != nil {
			var ae *AdminError
			if !errors.As(err, &ae) || ae.Status < 400 || ae.Status > 499 || ae.Msg == "" {
				t.Fatalf("error %v is not a 4xx *AdminError", err)
			}
			if _, jerr := json.Marshal(map[string]string{"error": ae.Msg}); jerr != nil {
				t.Fatal(jerr)
			}
			return
		}
		switch target {
		case TargetInitCluster:
			if len(req.NodeNameList) == 0 {
				t.Fatal("accepted InitCluster without nodes")
			}
		case TargetRegisterClusterNode:
			if req.ContactNodeName == "" {
				t.Fatal("accepted Register without contact")
			}
		case TargetPurgeClusterNode:
			if req.TargetNodeName == "" {
				t.Fatal("accepted Purge without target")
			}
		case TargetListChannelConnectionsShoal, TargetListChannelConnections, TargetDisconnectChannel, TargetDisconnectConnection,
			TargetDisconnectClient, TargetPushChannel, TargetPushConnection, TargetPushClient:
			if req.ChannelID == "" || len(req.ChannelID) > wire.MaxChannelIDLen {
				t.Fatalf("accepted channel_id %q", req.ChannelID)
			}
			if target == TargetListChannelConnectionsShoal && req.Target != TargetListChannelConnections {
				t.Fatalf("alias decoded as %q", req.Target)
			}
			switch target {
			case TargetDisconnectConnection, TargetPushConnection:
				if req.ConnectionID == "" || len(req.ConnectionID) > wire.MaxChannelIDLen {
					t.Fatalf("accepted connection_id %q", req.ConnectionID)
				}
			case TargetDisconnectClient, TargetPushClient:
				if req.ClientID == "" || len(req.ClientID) > wire.MaxChannelIDLen {
					t.Fatalf("accepted client_id %q", req.ClientID)
				}
			}
			switch target {
			case TargetPushChannel, TargetPushConnection, TargetPushClient:
				var m map[string]any
				if json.Unmarshal(req.Data, &m) != nil || m == nil {
					t.Fatalf("accepted data %q", req.Data)
				}
			default:
				if req.Data != nil {
					t.Fatalf("data %q kept for %s", req.Data, target)
				}
			}
		case TargetSetNodeMode:
			if req.Mode > affinity.ModeBlockNewConnection {
				t.Fatal("accepted a bad mode")
			}
		case TargetRequestSimulcastRid, TargetRequestRtpStream:
			if req.Target != TargetRequestSimulcastRid {
				t.Fatalf("%s decoded as %q", target, req.Target)
			}
			if req.ChannelID == "" || len(req.ChannelID) > wire.MaxChannelIDLen || !utf8.ValidString(req.ChannelID) {
				t.Fatalf("accepted channel_id %q", req.ChannelID)
			}
			if req.ConnectionID == "" || len(req.ConnectionID) > wire.MaxChannelIDLen || !utf8.ValidString(req.ConnectionID) {
				t.Fatalf("accepted receiver connection %q", req.ConnectionID)
			}
			if !slices.Contains([]string{"none", "r0", "r1", "r2", "auto"}, req.Rid) {
				t.Fatalf("accepted rid %q", req.Rid)
			}
			if req.Data != nil {
				t.Fatalf("data %q kept for %s", req.Data, target)
			}
		case TargetListClusterNodes, TargetListClusterChannels, TargetGetStatsReport, TargetGetStatsAllConnections, TargetGetLicense:
			if target == TargetGetLicense && req.Cluster {
				t.Fatal("GetLicense decoded a cluster flag")
			}
		case TargetGetStatsConnection:
			if req.ChannelID == "" || req.ConnectionID == "" || len(req.ChannelID) > wire.MaxChannelIDLen || len(req.ConnectionID) > wire.MaxChannelIDLen {
				t.Fatalf("accepted channel_id %q connection_id %q", req.ChannelID, req.ConnectionID)
			}
		default:
			t.Fatalf("accepted unknown target %q", target)
		}
	})
}

// statusErr is an error carrying an HTTP status, as cluster's are.
type statusErr struct {
	msg    string
	status int
}

func (e statusErr) Error() string   { return e.msg }
func (e statusErr) HTTPStatus() int { return e.status }
