package app

import "time"

// Node is one manager among those sharing a PostgreSQL database (SQLite: the one host).
// Each VM belongs to a node, which alone runs its hypervisor.
type Node struct {
	Name      string
	URL       string // where the other nodes and the UI reach it
	CPUs      int
	MemoryMiB int
	Network   string // its bridge network (CIDR), "" for none
	Version   string
	StartedAt time.Time
	// HeartbeatAt is when it last said it is up; Interval how often it says so.
	HeartbeatAt time.Time
	Interval    time.Duration
}

// Node states, as GET /v1/nodes and the pages say them.
const (
	NodeUp   = "up"
	NodeDown = "down" // three heartbeats missed
)

// MissedBeats is how many heartbeats a node may miss before it counts as down.
const MissedBeats = 3

// StateAt says whether the node is up at now: its last heartbeat is at most MissedBeats
// intervals old.
func (n *Node) StateAt(now time.Time) string {
	if now.Sub(n.HeartbeatAt) > time.Duration(MissedBeats)*n.Interval {
		return NodeDown
	}
	return NodeUp
}
