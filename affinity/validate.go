package affinity

import (
	"errors"
	"fmt"
)

// ErrInvalidView is wrapped by every error View.Validate returns.
var ErrInvalidView = errors.New("affinity: invalid view")

// Validate checks what placement relies on: node names non-empty, sorted and
// unique (NodeIndex searches them); modes known; connection counts not
// negative; every session owner naming a node of the view, at most once per
// session, with a count not negative. Whoever builds views (cluster/) calls
// it in tests; Place itself never fails on a bad view, it treats an owner
// out of range as an unusable node and an unknown mode as blocking all.
func (v *View) Validate() error {
	for i := range v.Nodes {
		n := &v.Nodes[i]
		switch {
		case n.Name == "":
			return fmt.Errorf("%w: node %d has no name", ErrInvalidView, i)
		case i > 0 && v.Nodes[i-1].Name >= n.Name:
			return fmt.Errorf("%w: nodes not sorted by name or duplicated: %q before %q", ErrInvalidView, v.Nodes[i-1].Name, n.Name)
		case n.Mode > ModeBlockNewConnection:
			return fmt.Errorf("%w: node %s has unknown mode %v", ErrInvalidView, n.Name, n.Mode)
		case n.Connections < 0:
			return fmt.Errorf("%w: node %s has %d connections", ErrInvalidView, n.Name, n.Connections)
		}
	}
	for ch, s := range v.Sessions {
		for k, o := range s.Owners {
			if o.Node < 0 || o.Node >= len(v.Nodes) {
				return fmt.Errorf("%w: channel %q: owner %d is node index %d, out of range [0,%d)", ErrInvalidView, ch, k, o.Node, len(v.Nodes))
			}
			if o.Connections < 0 {
				return fmt.Errorf("%w: channel %q: owner %s has %d connections", ErrInvalidView, ch, v.Nodes[o.Node].Name, o.Connections)
			}
			for _, prev := range s.Owners[:k] {
				if prev.Node == o.Node {
					return fmt.Errorf("%w: channel %q: node %s listed twice as owner", ErrInvalidView, ch, v.Nodes[o.Node].Name)
				}
			}
		}
	}
	return nil
}
