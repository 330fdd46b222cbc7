package sfu

import (
	"time"

	"github.com/pion/webrtc/v4"
)

// SetICETimeouts has the peer connections of s use these ICE timeouts
// (pion's SettingEngine.SetICETimeouts). Call it before the first Join.
func SetICETimeouts(s *SFU, disconnected, failed, keepalive time.Duration) {
	s.testSettings = func(se *webrtc.SettingEngine) { se.SetICETimeouts(disconnected, failed, keepalive) }
}

// OnICEState calls f with each change of the ICE connection state of c's
// peer connection (the SFU's side).
func OnICEState(c *Connection, f func(webrtc.ICEConnectionState)) { c.pc.OnICEConnectionStateChange(f) }
