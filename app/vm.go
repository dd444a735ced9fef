package app

import "time"

// VMState is where a VM is in its life.
type VMState string

// VM states: defined → starting → running ⇄ paused → stopping → stopped, or failed.
const (
	VMDefined  VMState = "defined"
	VMStarting VMState = "starting"
	VMRunning  VMState = "running"
	VMPaused   VMState = "paused" // the hypervisor runs, the guest's vCPUs are frozen
	VMStopping VMState = "stopping"
	VMStopped  VMState = "stopped"
	VMFailed   VMState = "failed"
)

// Live reports whether the VM's hypervisor process runs (its guest may be paused).
func (s VMState) Live() bool { return s == VMRunning || s == VMPaused }

// GuestIPSource says who set a VM's guest IP last.
type GuestIPSource string

// Guest IP sources.
const (
	SourceCallback GuestIPSource = "callback" // cloud-init first-boot callback, registration token
	SourceAgent    GuestIPSource = "agent"    // the guest agent's self-registration, registration token
	SourceManual   GuestIPSource = "manual"   // an operator, by form or API
)

// Valid reports whether s is a known source.
func (s GuestIPSource) Valid() bool {
	return s == SourceCallback || s == SourceAgent || s == SourceManual
}

// VM is a virtual machine record.
type VM struct {
	ID        string
	Name      string
	State     VMState
	VCPUs     int
	MemoryMiB int
	Image     string // the image it was made from ("" for none); its files serve where the fields below are ""
	Kernel    string
	Initrd    string
	Rootfs    string
	BootArgs  string
	MAC       string

	GuestIP          string // "" when unknown
	GuestIPSource    GuestIPSource
	GuestIPUpdatedAt time.Time // zero when GuestIP is ""
	// What the guest registered last (callback or agent), kept under a manual override
	// (see GuestIPState.Apply).
	RegisteredIP       string
	RegisteredIPSource GuestIPSource
	RegisteredIPAt     time.Time

	Provisioned bool   // a cloud-init seed with the agent was built for it
	AgentToken  string // the manager presents it to the agent; never shown in the API
	// SeedSecrets are its seed's registration token, host key and instance id, sealed
	// with the data dir's seal key (provision.SealKeyFile): the seed is rendered from
	// them and the record when the VM starts. "" for a VM whose seed predates that.
	SeedSecrets   string
	HostKey       string // the guest's SSH host public key, authorized_keys form
	HostKeySource string // "injected" (through the seed) or "tofu" (recorded on first use)

	Hypervisor    string // "firecracker", "qemu", or "" for the host's default
	PID           int    // the hypervisor process while running
	PIDIdentity   string // boot id and start time of that process: a reused pid does not match
	RunningDriver string // the driver that started it
	StateReason   string // why it failed (exit status, last console lines)
	Address       string // static IPv4 in CIDR form from the bridge network, "" for none
	Node          string // the node that runs it (app.Node); "" for a VM made before nodes

	CreatedAt time.Time
	UpdatedAt time.Time
}

// Busy reports whether the VM's process may be running, so its definition must not change.
func (vm *VM) Busy() bool {
	switch vm.State {
	case VMStarting, VMRunning, VMPaused, VMStopping:
		return true
	}
	return false
}

// VMSpec is what an operator gives when creating a VM. Zero values mean defaults.
type VMSpec struct {
	Hypervisor string // "" for the host's default
	// Provision builds a cloud-init seed with the guest agent. Nil means "when this manager
	// can" (it has an agent for the host's architecture).
	Provision *bool
	Name      string
	Image     string // boot from this image; Kernel, Initrd, Rootfs, BootArgs given here still win
	VCPUs     int
	MemoryMiB int
	Kernel    string
	Initrd    string
	Rootfs    string
	BootArgs  string
}

// VMUpdate changes some fields of a VM; nil fields stay as they are.
type VMUpdate struct {
	Hypervisor *string
	Name       *string
	Image      *string
	VCPUs      *int
	MemoryMiB  *int
	Kernel     *string
	Initrd     *string
	Rootfs     *string
	BootArgs   *string
}

// Apply copies the set fields of u onto spec.
func (u VMUpdate) Apply(spec *VMSpec) {
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	set(&spec.Name, u.Name)
	set(&spec.Image, u.Image)
	set(&spec.Hypervisor, u.Hypervisor)
	set(&spec.Kernel, u.Kernel)
	set(&spec.Initrd, u.Initrd)
	set(&spec.Rootfs, u.Rootfs)
	set(&spec.BootArgs, u.BootArgs)
	if u.VCPUs != nil {
		spec.VCPUs = *u.VCPUs
	}
	if u.MemoryMiB != nil {
		spec.MemoryMiB = *u.MemoryMiB
	}
}

// Spec returns the operator-given part of vm.
func (vm *VM) Spec() VMSpec {
	return VMSpec{Hypervisor: vm.Hypervisor, Name: vm.Name, Image: vm.Image, VCPUs: vm.VCPUs, MemoryMiB: vm.MemoryMiB, Kernel: vm.Kernel,
		Initrd: vm.Initrd, Rootfs: vm.Rootfs, BootArgs: vm.BootArgs}
}
