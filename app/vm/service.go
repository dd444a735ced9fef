package vm

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"hearth/app"
	"hearth/app/store"
)

// Service carries out what operators and guests ask of VMs, and writes the audit log as it
// goes: each change and its audit entry land together or not at all.
type Service struct {
	db     *store.DB
	rules  Rules
	seeder Seeder    // nil: VMs are not provisioned
	alloc  Allocator // nil: no static addresses
	rt     *runner   // nil: VMs are records only
	// dataDir holds the VMs' directories (app.VMFiles); "" for a service that keeps only
	// records.
	dataDir string
	// afterRestore runs once a VM restored from a snapshot runs again (see WithAfterRestore).
	afterRestore func(ctx context.Context, vm *app.VM) (string, error)
	// node is this manager's node: it makes VMs there and runs only those ("" before
	// nodes: every VM is its own).
	node string
	// installer runs a queued one-click agent install (WithInstaller).
	installer func(ctx context.Context, id string, by app.Actor) error
}

// WithNode makes the service this node's: new VMs belong to it, and only its VMs are
// started, stopped, re-attached and polled here.
func (s *Service) WithNode(name string) *Service {
	s.node = name
	return s
}

// own refuses to act on another node's VM: only its node runs its hypervisor.
func (s *Service) own(vm *app.VM) error {
	if s.node != "" && vm.Node != "" && vm.Node != s.node {
		return app.Errorf(app.ECONFLICT, "VM %s runs on node %s; this manager (node %s) runs only its own VMs: act on it there", vm.Name, vm.Node, s.node)
	}
	return nil
}

// Owns refuses (ECONFLICT) a VM that is another node's: what needs its host (its
// hypervisor, its files, its guest network) is done by its node.
func (s *Service) Owns(vm *app.VM) error { return s.own(vm) }

// WithAfterRestore sets what runs once a VM restored from a snapshot runs again: the
// manager steps the guest's clock, which stood still in the snapshot, through its agent.
// What it says (or its error) goes into the VM's audit log.
func (s *Service) WithAfterRestore(f func(ctx context.Context, vm *app.VM) (string, error)) *Service {
	s.afterRestore = f
	return s
}

// NewService returns a Service over db that checks guest IPs with rules and keeps VMs'
// files in dataDir.
func NewService(db *store.DB, rules Rules, dataDir string) *Service {
	return &Service{db: db, rules: rules, dataDir: dataDir}
}

// Rules returns the guest-IP rules in force.
func (s *Service) Rules() Rules { return s.rules }

// CheckGuestIP applies the guest-IP rules to raw: what the manager may dial.
func (s *Service) CheckGuestIP(raw string) (netip.Addr, error) { return s.rules.Check(raw) }

// Create defines a new VM from spec. It returns the VM and its registration token, which
// is shown this once: only its hash is kept.
func (s *Service) Create(ctx context.Context, spec app.VMSpec, by app.Actor) (*app.VM, string, error) {
	if err := Normalize(&spec); err != nil {
		return nil, "", err
	}
	if s.rt != nil { // a manager that runs VMs checks their images exist here and now
		if err := s.rt.checkImages(spec.Kernel, spec.Initrd, spec.Rootfs, false); err != nil {
			return nil, "", err
		}
	}
	im, err := s.image(ctx, spec.Image)
	if err != nil {
		return nil, "", err
	}
	vm := &app.VM{ID: app.NewID(), Name: spec.Name, Image: spec.Image, State: app.VMDefined, VCPUs: spec.VCPUs, Hypervisor: spec.Hypervisor,
		MemoryMiB: spec.MemoryMiB, Kernel: spec.Kernel, Initrd: spec.Initrd, Rootfs: spec.Rootfs,
		BootArgs: spec.BootArgs, MAC: newMAC(), Node: s.node}
	token, hash := app.NewToken(app.PrefixRegistrationToken)
	provision := s.seeder != nil
	if spec.Provision != nil {
		provision = *spec.Provision
	}
	detail := fmt.Sprintf("created %s (%d vCPU, %d MiB)", vm.Name, vm.VCPUs, vm.MemoryMiB)
	if provision && im != nil && !im.CloudInit {
		return nil, "", app.Invalid(map[string]string{"provision": fmt.Sprintf("image %s has no cloud-init, so its VMs cannot be provisioned; create the VM without provisioning, or from an image with cloud-init", im.Name)})
	}
	if im != nil {
		detail += " from image " + im.Name
	}
	if provision {
		// Nothing is written but the record: the seed is rendered when the VM starts, from
		// the record and the secrets sealed into it here.
		if err := s.CanProvision(); err != nil {
			return nil, "", err
		}
		if s.alloc != nil {
			addr, err := s.allocate(ctx)
			if err != nil {
				return nil, "", err
			}
			vm.Address = addr
			detail += " at " + addr
		}
		sealed, err := s.seeder.Prepare(vm, token)
		if err != nil {
			return nil, "", err
		}
		vm.SeedSecrets = sealed
		detail += " with a cloud-init seed"
	}
	if err := s.db.CreateVM(ctx, vm, hash, entry(by, app.AuditVMCreate, vm.ID, detail)); err != nil {
		return nil, "", err
	}
	return vm, token, nil
}

// Get returns one VM.
func (s *Service) Get(ctx context.Context, id string) (*app.VM, error) { return s.db.VM(ctx, id) }

// List returns every VM by name.
func (s *Service) List(ctx context.Context) ([]*app.VM, error) { return s.db.VMs(ctx) }

// Query returns the page of VMs q selects.
func (s *Service) Query(ctx context.Context, q app.VMQuery) ([]*app.VM, error) {
	return s.db.QueryVMs(ctx, q)
}

// Count counts the VMs whose name contains name, by state.
func (s *Service) Count(ctx context.Context, name string) (map[app.VMState]int, error) {
	return s.db.CountVMs(ctx, name)
}

// Running returns the running VMs by name: what the collector polls.
func (s *Service) Running(ctx context.Context) ([]*app.VM, error) {
	return s.db.RunningVMs(ctx, s.node)
}

// Update changes the set fields of u on the VM. A running VM's definition cannot change.
func (s *Service) Update(ctx context.Context, id string, u app.VMUpdate, by app.Actor) (*app.VM, error) {
	vm, err := s.db.VM(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := s.own(vm); err != nil { // its files, images and seal key are its node's
		return nil, err
	}
	spec := vm.Spec()
	u.Apply(&spec)
	if err := Normalize(&spec); err != nil {
		return nil, err
	}
	if s.rt != nil {
		if err := s.rt.checkImages(spec.Kernel, spec.Initrd, spec.Rootfs, false); err != nil {
			return nil, err
		}
	}
	if vm.Busy() {
		return nil, app.Errorf(app.ECONFLICT, "VM %s is %s; stop it before changing it", vm.Name, vm.State)
	}
	if spec.Image != vm.Image {
		if _, err := s.image(ctx, spec.Image); err != nil {
			return nil, err
		}
	}
	vm.Image = spec.Image
	oldName := vm.Name
	vm.Name, vm.VCPUs, vm.MemoryMiB, vm.Hypervisor = spec.Name, spec.VCPUs, spec.MemoryMiB, spec.Hypervisor
	vm.Kernel, vm.Initrd, vm.Rootfs, vm.BootArgs = spec.Kernel, spec.Initrd, spec.Rootfs, spec.BootArgs
	detail := "updated " + vm.Name
	if vm.Name == oldName || !vm.Provisioned || s.seeder == nil {
		if err := s.db.UpdateVM(ctx, vm, entry(by, app.AuditVMUpdate, id, detail)); err != nil {
			return nil, err
		}
		return vm, nil
	}
	// A provisioned guest learns its name from its seed: the seed gets a new instance id
	// and a new registration token (the old one's plaintext is not kept), and the record,
	// the token and the sealed secrets change together.
	token, hash := app.NewToken(app.PrefixRegistrationToken)
	sealed, err := s.secrets(ctx, vm)
	if err == nil {
		sealed, err = s.seeder.Restage(vm, sealed, token)
	}
	if err != nil {
		return nil, app.Errorf(app.ECONFLICT, "cannot rename %s: its cloud-init seed cannot be rendered again (%s)", oldName, app.ErrorMessage(err))
	}
	vm.SeedSecrets = sealed
	detail = fmt.Sprintf("renamed %s to %s; the guest takes the new name at its next boot", oldName, vm.Name)
	if err := s.db.UpdateVMWithToken(ctx, vm, hash, entry(by, app.AuditVMUpdate, id, detail)); err != nil {
		return nil, err
	}
	return vm, nil
}

// Delete removes a VM that is not running.
func (s *Service) Delete(ctx context.Context, id string, by app.Actor) error {
	vm, err := s.db.VM(ctx, id)
	if err != nil {
		return err
	}
	if err := s.own(vm); err != nil { // its files are on its node
		return err
	}
	if vm.Busy() {
		return app.Errorf(app.ECONFLICT, "VM %s is %s; stop it before deleting it", vm.Name, vm.State)
	}
	if err := s.db.DeleteVM(ctx, id, entry(by, app.AuditVMDelete, id, "deleted "+vm.Name)); err != nil {
		return err
	}
	if s.rt != nil {
		s.delTap(id)
	}
	if err := s.removeFiles(id); err != nil {
		return fmt.Errorf("VM deleted, but its files remain: %w", err)
	}
	return nil
}

// files names the VM's paths in the data dir.
func (s *Service) files(id string) app.VMFiles { return app.FilesOf(s.dataDir, id) }

// removeFiles deletes the VM's directory: seed, console, disk copies, all of it.
func (s *Service) removeFiles(id string) error {
	if s.dataDir == "" {
		return nil
	}
	return os.RemoveAll(s.files(id).Dir)
}

// SetGuestIP sets the VM's guest IP from raw, or clears it when raw is "". A guest (its
// actor named by GuestVM) speaks only for its own VM, as callback or agent; operators set
// it as SourceManual.
func (s *Service) SetGuestIP(ctx context.Context, id, raw string, source app.GuestIPSource, by app.Actor) (*app.VM, error) {
	if err := SpeaksFor(by, id); err != nil {
		return nil, err
	}
	if !source.Valid() {
		return nil, app.Errorf(app.EINVALID, "source %q is not one of callback, agent, manual", source)
	}
	if by.Kind == app.ActorGuest && source == app.SourceManual {
		return nil, app.Errorf(app.EINVALID, "a guest registers as callback or agent, never manual")
	}
	if vm, err := s.db.VM(ctx, id); err != nil {
		return nil, err
	} else if err := s.own(vm); err != nil { // the address is checked against its node's networks, and dialled from there
		return nil, err
	}
	ip := ""
	detail := fmt.Sprintf("cleared guest IP (%s)", source)
	if raw != "" {
		addr, err := s.rules.Check(raw)
		if err != nil {
			return nil, err
		}
		ip = addr.String()
		detail = fmt.Sprintf("set guest IP %s (%s)", ip, source)
	}
	return s.db.SetGuestIP(ctx, id, ip, source, entry(by, app.AuditGuestIP, id, detail))
}

// GuestVM resolves a registration token to the VM it belongs to: the one place a guest is
// authenticated. An unknown token is EUNAUTHORIZED. The lookup is by hash, so timing
// reveals nothing of the token.
func (s *Service) GuestVM(ctx context.Context, token string) (string, error) {
	owner, err := s.db.RegistrationTokenVM(ctx, app.HashToken(token))
	if app.ErrorCode(err) == app.ENOTFOUND {
		return "", app.Errorf(app.EUNAUTHORIZED, "unknown token")
	}
	return owner, err
}

// SpeaksFor is the rule that a guest may only speak for its own VM: by, if a guest, must be
// VM id's (its Name is the VM that GuestVM found). Operators pass. The comparison is
// constant-time, so nothing is learnt about other VMs' ids.
func SpeaksFor(by app.Actor, id string) error {
	if by.Kind != app.ActorGuest {
		return nil
	}
	if subtle.ConstantTimeCompare([]byte(by.Name), []byte(id)) != 1 {
		return app.Errorf(app.EFORBIDDEN, "this registration token belongs to another VM")
	}
	return nil
}

// RotateRegistrationToken gives the VM a new registration token; the old one stops working.
func (s *Service) RotateRegistrationToken(ctx context.Context, id string, by app.Actor) (string, error) {
	token, hash := app.NewToken(app.PrefixRegistrationToken)
	if err := s.db.ReplaceRegistrationToken(ctx, id, hash, entry(by, app.AuditVMUpdate, id, "new registration token")); err != nil {
		return "", err
	}
	return token, nil
}

// AuditLog returns the newest audit entries about the VM.
func (s *Service) AuditLog(ctx context.Context, id string, limit int) ([]app.AuditEntry, error) {
	return s.db.AuditLog(ctx, id, limit)
}

func entry(by app.Actor, action, vmID, detail string) *app.AuditEntry {
	return &app.AuditEntry{Actor: by.String(), Action: action, VMID: vmID, Addr: by.Addr, Detail: detail}
}

// newMAC returns a random locally administered unicast MAC, the VM's for life.
func newMAC() string {
	b := make([]byte, 6)
	rand.Read(b)
	b[0] = b[0]&0xfc | 0x02 // locally administered, unicast
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5])
}

// noImage says that this node has no image of that name, and which nodes have one.
func (s *Service) noImage(ctx context.Context, name string) string {
	on, err := s.db.ImageNodes(ctx, name)
	if err != nil || len(on) == 0 {
		return fmt.Sprintf("no image is named %q", name)
	}
	have := make([]string, len(on))
	for i, im := range on {
		have[i] = im.Node
		if im.State != app.ImageReady {
			have[i] += " (" + string(im.State) + ")"
		}
	}
	return fmt.Sprintf("node %s has no image named %q; it is on node %s: make the VM there, or build or import the image on %s too",
		s.node, name, strings.Join(have, ", "), s.node)
}

// image is the named image a VM is to be made from, which must be ready; nil for none.
func (s *Service) image(ctx context.Context, name string) (*app.Image, error) {
	if name == "" {
		return nil, nil
	}
	im, err := s.db.Image(ctx, s.node, name)
	if app.ErrorCode(err) == app.ENOTFOUND {
		return nil, app.Invalid(map[string]string{"image": s.noImage(ctx, name)})
	}
	if err != nil {
		return nil, err
	}
	if im.State != app.ImageReady {
		return nil, app.Invalid(map[string]string{"image": fmt.Sprintf("image %s is %s, not ready", name, im.State)})
	}
	return im, nil
}
