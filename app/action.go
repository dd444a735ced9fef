package app

import "time"

// VMAction is a lifecycle action asked of a VM that another node runs: recorded in the
// database, carried out by the VM's own node (its reconciler hears of it at once through
// PostgreSQL's LISTEN/NOTIFY, and sweeps the queue as a safety net), so that no node ever
// runs another's hypervisor and a node that was down catches up when it is back.
type VMAction struct {
	ID         string
	VMID       string
	Node       string // the node that must carry it out
	Action     string // ActionStart, …
	Actor      string // who asked (Actor.String()), and from where
	Addr       string
	State      string // ActionQueued, ActionRunning, ActionDone, ActionFailed
	Error      string
	CreatedAt  time.Time
	FinishedAt time.Time // zero until done or failed
}

// Actions a node carries out for another.
const (
	ActionStart   = "start"
	ActionStop    = "stop"
	ActionRestart = "restart"
	ActionPause   = "pause"
	ActionResume  = "resume"
	ActionDelete  = "delete"
	// ActionInstall is a one-click agent install (with Hearth's own key): the node runs
	// the install job, whose progress any node reads. Installs with an operator's
	// credentials are never queued (they are not stored): they go to the node at once.
	ActionInstall = "install"
)

// Action states.
const (
	ActionQueued  = "queued"
	ActionRunning = "running"
	ActionDone    = "done"
	ActionFailed  = "failed"
)
