package cluster

import (
	"fmt"
	"maps"
	"net"
	"strconv"

	"github.com/hashicorp/serf/serf"

	"github.com/shoal-sfu/shoal/affinity"
)

// serf tags: small node facts gossiped with liveness.
const (
	tagRole   = "role" // "regular" or "temporary"
	tagBoot   = "boot" // one run of the process
	tagRPC    = "rpc"  // port of Raft and the cluster RPC
	tagMode   = "mode" // affinity.Mode as a number
	tagReason = "why"  // why the mode was set
	tagSig    = "sig"  // external_signaling_url
	tagAPI    = "api"  // external_api_url
	tagMax    = "max"  // max_connections
	tagMaxN   = "maxn" // max_nodes
	tagVer    = "ver"  // version
	tagSvc    = "svc"  // service id
	tagCID    = "cid"  // cluster id
)

// tags returns what this node gossips about itself.
func (n *Node) tags() map[string]string {
	role := "regular"
	if n.cfg.Temporary {
		role = "temporary"
	}
	_, p, _ := net.SplitHostPort(n.addr)
	n.local.Lock()
	mode, reason := n.local.mode, n.local.reason
	n.local.Unlock()
	tags := map[string]string{tagRole: role, tagBoot: n.boot, tagRPC: p,
		tagMode: strconv.Itoa(int(mode)), tagReason: reason, tagSvc: n.cfg.ServiceID, tagCID: n.cfg.ClusterID}
	// Facts also travel in the replicated state; here they serve until
	// that has them. Skipped if they would not fit memberlist's 512 bytes.
	facts := map[string]string{tagSig: n.cfg.ExternalSignalingURL, tagAPI: n.cfg.ExternalAPIURL,
		tagMax: strconv.Itoa(n.cfg.MaxConnections), tagMaxN: strconv.Itoa(n.cfg.MaxNodes), tagVer: n.cfg.Version}
	size := 0
	for k, v := range tags {
		size += len(k) + len(v) + 4
	}
	for k, v := range facts {
		size += len(k) + len(v) + 4
	}
	if size < 400 {
		maps.Copy(tags, facts)
	}
	return tags
}

// infoFromTags builds what gossip says of a member, for a node whose
// facts are not replicated yet.
func infoFromTags(m serf.Member) NodeInfo {
	maxc, _ := strconv.Atoi(m.Tags[tagMax])
	maxn, _ := strconv.Atoi(m.Tags[tagMaxN])
	return NodeInfo{Name: m.Name, Temporary: m.Tags[tagRole] == "temporary", SignalingURL: m.Tags[tagSig],
		APIURL: m.Tags[tagAPI], MaxConnections: maxc, MaxNodes: maxn, Version: m.Tags[tagVer],
		Addr: memberRPCAddr(m)}
}

// memberRPCAddr is a member's Raft and RPC address, from gossip.
func memberRPCAddr(m serf.Member) string {
	return net.JoinHostPort(m.Addr.String(), m.Tags[tagRPC])
}

// modeFromTags is a member's mode and its reason as gossip says; a mode
// this node does not know reads as normal.
func modeFromTags(m serf.Member) (affinity.Mode, string) {
	mode := affinity.ModeNormal
	if v, err := strconv.Atoi(m.Tags[tagMode]); err == nil && v >= 0 && v <= int(affinity.ModeBlockNewConnection) {
		mode = affinity.Mode(v)
	}
	return mode, m.Tags[tagReason]
}

// sameService is serf's merge delegate: a node refuses to merge with
// members of another service or cluster id (a node configured for another
// service that was given this cluster's key and address), so the two
// never see each other.
type sameService struct{ svc, cid string }

func (d sameService) NotifyMerge(members []*serf.Member) error {
	for _, m := range members {
		if m.Tags[tagSvc] != d.svc || m.Tags[tagCID] != d.cid {
			return fmt.Errorf("cluster: member %s is of service %q cluster %q, this node of service %q cluster %q",
				m.Name, m.Tags[tagSvc], m.Tags[tagCID], d.svc, d.cid)
		}
	}
	return nil
}
