package sfu

// DirectFollow takes c off the direct path, as a selected pair not on the
// mux would (on false), or puts it back on its selected pair (on true).
func DirectFollow(c *Connection, on bool) {
	ds := c.direct
	ds.setup.Lock()
	defer ds.setup.Unlock()
	if !on {
		ds.followLocked(nil)
		return
	}
	pair, _ := c.pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	ds.followLocked(pair)
}
