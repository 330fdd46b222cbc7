package affinity

// Capacity kept through failures: while regular nodes are failed
// (Connected false in the view), every remaining connected node with a
// capacity, regular or temporary, takes ceil(failed capacity / remaining
// nodes) on top of its own. A failed temporary node moves nothing. When the
// failed node returns, the share goes back to zero; placement never drops a
// connection for it, a node above its limit is only full.

// ExtraCapacity returns the capacity each connected node takes on top of its
// own because regular nodes failed: ceil(sum of the failed regular nodes'
// capacities / number of connected nodes with a positive capacity). It is 0
// with clustering off, when no regular node failed, or when no node remains.
//
// It runs in O(len(v.Nodes)) and allocates nothing.
func (v *View) ExtraCapacity() int {
	if !v.Settings.Cluster {
		return 0
	}
	failed, remaining := 0, 0
	for i := range v.Nodes {
		n := &v.Nodes[i]
		if n.Capacity <= 0 {
			continue
		}
		switch {
		case n.Connected:
			remaining++
		case !n.Temporary:
			failed += n.Capacity
		}
	}
	if failed == 0 || remaining == 0 {
		return 0
	}
	return (failed + remaining - 1) / remaining
}

// EffectiveCapacity returns the capacity of node i in this view: its own
// Capacity plus ExtraCapacity while it is connected, 0 while it is not
// connected (it takes nothing now) or when its Capacity is zero or less.
// With clustering off it is the node's own Capacity. It panics if i is out of
// range, like an index.
func (v *View) EffectiveCapacity(i int) int {
	return v.effectiveCapacity(i, v.ExtraCapacity())
}

func (v *View) effectiveCapacity(i, share int) int {
	n := &v.Nodes[i]
	if n.Capacity <= 0 {
		return 0
	}
	if !v.Settings.Cluster {
		return n.Capacity
	}
	if !n.Connected {
		return 0
	}
	return n.Capacity + share
}

// EffectiveCapacities writes the effective capacity of every node of v, in
// the order of v.Nodes, into dst's storage (growing it if needed) and returns
// the slice, of length len(v.Nodes). See View.EffectiveCapacity for the rule.
// With a dst of sufficient capacity it allocates nothing.
func EffectiveCapacities(v *View, dst []int) []int {
	dst = dst[:0]
	share := v.ExtraCapacity()
	for i := range v.Nodes {
		dst = append(dst, v.effectiveCapacity(i, share))
	}
	return dst
}
