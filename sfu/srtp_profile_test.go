package sfu_test

import (
	"testing"

	"github.com/pion/dtls/v3"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/shoal-sfu/shoal/internal/testutil/pionapi"
	"github.com/shoal-sfu/shoal/sfu"
)

// The SFU, DTLS server to its clients, prefers AES-128-GCM for SRTP (pion
// clients, like browsers, offer AES-256-GCM first), and still takes a
// client that offers AES-CM only.
func TestSRTPProfile(t *testing.T) {
	s := newSFU(t, nil)
	for _, tc := range []struct {
		name  string
		offer []dtls.SRTPProtectionProfile // nil: pion's default order
		want  srtp.ProtectionProfile
	}{
		{"default", nil, srtp.ProtectionProfileAeadAes128Gcm},
		{"aes-cm", []dtls.SRTPProtectionProfile{dtls.SRTP_AES128_CM_HMAC_SHA1_80}, srtp.ProtectionProfileAes128CmHmacSha1_80},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := pionapi.Local(func(se *webrtc.SettingEngine) {
				if tc.offer != nil {
					se.SetSRTPProtectionProfiles(tc.offer...)
				}
			})
			c := join(t, s, clientOpts{channel: "srtp", id: tc.name, role: sfu.RoleRecvonly, api: api})
			got := ""
			for _, st := range c.pc.GetStats() {
				if ts, ok := st.(webrtc.TransportStats); ok && ts.SRTPCipher != "" {
					got = ts.SRTPCipher
				}
			}
			if got != tc.want.String() {
				t.Fatalf("SRTP profile %q, want %q", got, tc.want.String())
			}
		})
	}
}
