package app

import "time"

// Credentials say how to log in to a guest over SSH for one agent install. Empty means the
// manager's own key as user hearth (what provisioned VMs authorise). They are used for one
// run and never stored or logged.
type Credentials struct {
	User       string
	Port       int
	PrivateKey []byte // OpenSSH or PEM private key, unencrypted
	Password   string
}

// InstallJob is one run of the agent installer on a VM.
type InstallJob struct {
	ID         string
	VMID       string
	State      string // JobRunning, JobDone, JobFailed
	Steps      []JobStep
	Error      string
	CreatedAt  time.Time
	UpdatedAt  time.Time
	FinishedAt time.Time // zero while running
}

// JobStep is one step of a job.
type JobStep struct {
	Name   string `json:"name"`
	State  string `json:"state"` // pending, running, done, failed
	Detail string `json:"detail,omitempty"`
}

// Job and step states.
const (
	JobRunning  = "running"
	JobDone     = "done"
	JobFailed   = "failed"
	StepPending = "pending"
)

// AuditAgentInstall is the audit action for agent installs.
const AuditAgentInstall = "vm.agent_install"
