package sfu

// SpreadBacklog returns the packets the spread fan-outs of ch's tracks
// have yet to write (for benchmarks that pace their writes).
func SpreadBacklog(ch *Channel) int {
	ch.mu.Lock()
	srcs := append([]*source(nil), ch.sources...)
	ch.mu.Unlock()
	n := 0
	for _, s := range srcs {
		if sp := s.spread.Load(); sp != nil {
			for _, w := range sp.workers {
				n += int(w.head.Load() - w.tail.Load())
			}
		}
	}
	return n
}
