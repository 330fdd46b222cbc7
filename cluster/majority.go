package cluster

// majorityAlive is the rule by which a node serves: more than half of the
// voters (the regular nodes, Raft's voters) are alive. alive says whether
// gossip sees a node alive; the caller answers true for itself. Names that
// alive accepts but that are not voters (temporary nodes, unknown members)
// do not count, and no voters is no majority. With an even number of
// voters, half is not enough.
func majorityAlive(voters []string, alive func(name string) bool) bool {
	up := 0
	for _, v := range voters {
		if alive(v) {
			up++
		}
	}
	return 2*up > len(voters)
}
