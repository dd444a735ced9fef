package app

import (
	"strings"
	"time"
)

// User is an operator who signs in to the UI.
type User struct {
	ID        int64
	Name      string
	CreatedAt time.Time
}

// APIToken is a named bearer token for the JSON API, as listed: the token itself is shown
// once, at creation, and only its hash is kept.
type APIToken struct {
	Name       string
	CreatedAt  time.Time
	LastUsedAt time.Time // zero if never used
}

// Actor is who did something, for authorisation and the audit log.
type Actor struct {
	Kind string // "user", "token", "guest" or "system"
	Name string // user name, token name, or VM id for a guest
	Addr string // remote address, "" for local commands
}

// Actor kinds.
const (
	ActorUser   = "user"
	ActorToken  = "token"
	ActorGuest  = "guest"
	ActorSystem = "system"
)

// String is how an actor appears in the audit log.
func (a Actor) String() string {
	if a.Name == "" {
		return a.Kind
	}
	return a.Kind + ":" + a.Name
}

// ParseActor reads back what String wrote (the address is not in it).
func ParseActor(s, addr string) Actor {
	kind, name, _ := strings.Cut(s, ":")
	return Actor{Kind: kind, Name: name, Addr: addr}
}

// AuditEntry is one line of the audit log: who did what to which VM, from where.
type AuditEntry struct {
	ID     int64
	At     time.Time
	Actor  string
	Action string
	VMID   string // "" for actions on no VM (sign-in)
	Addr   string
	Detail string
}

// Audit actions.
const (
	AuditSignIn       = "sign_in"
	AuditSignInFailed = "sign_in_failed"
	AuditSignOut      = "sign_out"
	AuditVMCreate     = "vm.create"
	AuditVMUpdate     = "vm.update"
	AuditVMDelete     = "vm.delete"
	AuditGuestIP      = "vm.guest_ip"
	AuditVMStart      = "vm.start"
	AuditVMStop       = "vm.stop"
	AuditVMState      = "vm.state"
	AuditVMPause      = "vm.pause"
	AuditVMAction     = "vm.action" // a lifecycle action asked of another node
	AuditVMResume     = "vm.resume"
	AuditSnapshot     = "vm.snapshot"         // taken (or failed)
	AuditRestore      = "vm.snapshot_restore" // a VM restored from one of its snapshots
	AuditSnapshotDrop = "vm.snapshot_delete"
	AuditConsole      = "vm.console" // a console opened, and how long it stayed open (input is never logged)
	AuditTokenCreate  = "token.create"
	AuditTokenRevoke  = "token.revoke"
	AuditUserCreate   = "user.create"
	AuditUserPasswd   = "user.passwd"
)
