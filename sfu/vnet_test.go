package sfu_test

import (
	"fmt"
	"regexp"
	"testing"

	"github.com/pion/transport/v5/vnet"
	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/internal/slogpion"
	"github.com/shoal-sfu/shoal/internal/testutil"
	"github.com/shoal-sfu/shoal/internal/testutil/pionapi"
	"github.com/shoal-sfu/shoal/sfu"
)

// candidateRE matches an SDP candidate line and captures its address and port.
var candidateRE = regexp.MustCompile(`(?m)^a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ host`)

// TestVirtualNetwork runs a publisher and a subscriber through the SFU on
// pion's vnet, with no host socket: one router, one virtual network for the
// SFU (Config.Net) and one for both clients. With Network.UDPPort the mux
// socket is opened on the virtual network too, and its candidates carry the
// virtual network's address.
func TestVirtualNetwork(t *testing.T) {
	testutil.CheckLeaks(t)
	const serverIP, clientIP, muxPort = "10.0.0.2", "10.0.0.3", 50000
	for _, udpPort := range []int{0, muxPort} {
		t.Run(fmt.Sprintf("UDPPort=%d", udpPort), func(t *testing.T) {
			log := testutil.LoggerLevel(t, testLogLevel)
			router, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "10.0.0.0/24", LoggerFactory: slogpion.New(log)})
			if err != nil {
				t.Fatal(err)
			}
			nets := make([]*vnet.Net, 2)
			for i, ip := range []string{serverIP, clientIP} {
				if nets[i], err = vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{ip}}); err != nil {
					t.Fatal(err)
				}
				if err := router.AddNet(nets[i]); err != nil {
					t.Fatal(err)
				}
			}
			if err := router.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = router.Stop() }) // after the SFU and the clients close
			s := newSFU(t, func(c *sfu.Config) {
				c.Net = nets[0]
				c.Network = sfu.NetworkConfig{UDPPort: udpPort} // no loopback filter: the virtual addresses are not loopback
			})
			api := pionapi.Local(func(se *webrtc.SettingEngine) {
				se.SetNet(nets[1])
				se.SetIPFilter(nil)
				se.SetIncludeLoopbackCandidate(false)
			})
			pub := join(t, s, clientOpts{channel: "vnet", id: "PUB", role: sfu.RoleSendonly, video: true, api: api})
			sub := join(t, s, clientOpts{channel: "vnet", id: "SUB", role: sfu.RoleRecvonly, api: api})

			cands := candidateRE.FindAllStringSubmatch(sub.conn.Offer().SDP, -1)
			if len(cands) == 0 {
				t.Fatalf("no host candidate in the offer:\n%s", sub.conn.Offer().SDP)
			}
			for _, c := range cands {
				if c[1] != serverIP || (udpPort != 0 && c[2] != fmt.Sprint(udpPort)) {
					t.Fatalf("candidate %q: want address %s (port %d when muxed) of the virtual network", c[0], serverIP, udpPort)
				}
			}
			pub.writeVideoUntil(t, 7, 5, func() bool { return len(sub.payloads("PUB/PUB-video")) >= 5 }, "the subscriber gets the publisher's video over the virtual network")
		})
	}
}
