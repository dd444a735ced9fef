package vm

import (
	"context"
	"net/netip"
	"os"

	"hearth/app"
	"hearth/app/hypervisor/hostnet"
)

// Seeder renders the cloud-init seed that carries the guest agent into a VM; the
// manager's is provision.Provisioner. A VM's seed is rendered when it starts, from its
// record and its sealed secrets, and removed when it stops: 10,000 VMs do not keep 10,000
// copies of the agent on disk. It is an interface so that VM rules do not depend on how
// seeds are made.
type Seeder interface {
	// Check says whether seeds can be built now (an agent for the guests' arch is at hand).
	Check() error
	// Prepare fills the VM's agent token and host key, returning the secrets its seed
	// will carry (the registration token, the host's private key), sealed.
	Prepare(vm *app.VM, registrationToken string) (sealed string, err error)
	// Render writes the VM's seed to path: the same files on every render of one
	// instance id.
	Render(path string, vm *app.VM, sealed string) error
	// RenderTemp renders the seed into a new temporary file of dir (one a crash leaves is
	// RemoveTemp's) and returns its path.
	RenderTemp(dir string, vm *app.VM, sealed string) (string, error)
	// Restage gives the seed a new instance id and registration token for vm's new name,
	// so the guest takes the name at its next boot; it returns the new secrets, sealed.
	Restage(vm *app.VM, sealed, registrationToken string) (string, error)
	// Adopt reads a seed written whole at create time and returns its secrets, sealed.
	Adopt(path string, vm *app.VM) (string, error)
	// RemoveTemp removes what a crash left of seeds being written, and says what.
	RemoveTemp(dir string) ([]string, error)
}

// Allocator hands out static addresses from the bridge network (hostnet.Net).
type Allocator interface {
	Allocate(used []netip.Addr) (netip.Addr, error)
	Config() hostnet.Config
}

// WithAllocator gives each new provisioned VM a static address, written into its seed.
func (s *Service) WithAllocator(a Allocator) *Service {
	s.alloc = a
	return s
}

// allocate picks the VM's address: the first one no other VM holds. The unique index on
// the column settles a race between two creates.
func (s *Service) allocate(ctx context.Context) (string, error) {
	vms, err := s.db.VMs(ctx)
	if err != nil {
		return "", err
	}
	var used []netip.Addr
	for _, v := range vms {
		if p, err := netip.ParsePrefix(v.Address); err == nil {
			used = append(used, p.Addr())
		}
	}
	a, err := s.alloc.Allocate(used)
	if err != nil {
		return "", app.Errorf(app.ECONFLICT, "%s", err.Error())
	}
	return netip.PrefixFrom(a, s.alloc.Config().CIDR.Bits()).String(), nil
}

// WithSeeder makes new VMs provisioned by default, through sd.
func (s *Service) WithSeeder(sd Seeder) *Service {
	s.seeder = sd
	return s
}

// CanProvision says whether a VM created now could be provisioned, and if not, why.
func (s *Service) CanProvision() error {
	if s.seeder == nil {
		return app.Errorf(app.EUNAVAILABLE, "this manager has no provisioner configured")
	}
	return s.seeder.Check()
}

// secrets returns the VM's sealed seed secrets. A VM whose seed was written whole at
// create time (before seeds were rendered at start) has its seed adopted first: its
// secrets sealed into the record, the file removed.
func (s *Service) secrets(ctx context.Context, vm *app.VM) (string, error) {
	if vm.SeedSecrets != "" {
		return vm.SeedSecrets, nil
	}
	legacy := s.files(vm.ID).Seed()
	if _, err := os.Stat(legacy); err != nil {
		return "", app.Errorf(app.EINVALID, "VM %s has neither sealed seed secrets nor a seed in the data dir (%s)", vm.Name, legacy)
	}
	sealed, err := s.seeder.Adopt(legacy, vm)
	if err != nil {
		return "", app.Errorf(app.EINVALID, "the seed of VM %s cannot be adopted: %s", vm.Name, err)
	}
	if err := s.db.SetSeedSecrets(ctx, vm.ID, sealed); err != nil {
		return "", err
	}
	vm.SeedSecrets = sealed
	os.Remove(legacy) //nolint:errcheck // its secrets are in the record now; a leftover is harmless
	return sealed, nil
}

// RenderSeed writes a provisioned VM's seed into a temporary file of its directory (for
// the download) and returns its path and the function that removes it.
func (s *Service) RenderSeed(ctx context.Context, id string) (string, func(), error) {
	vm, err := s.db.VM(ctx, id)
	if err != nil {
		return "", nil, err
	}
	if !vm.Provisioned || s.seeder == nil {
		return "", nil, app.Errorf(app.ENOTFOUND, "VM %s was created without a cloud-init seed", vm.Name)
	}
	sealed, err := s.secrets(ctx, vm)
	if err != nil {
		return "", nil, err
	}
	path, err := s.seeder.RenderTemp(s.files(id).Dir, vm, sealed)
	if err != nil {
		return "", nil, err
	}
	return path, func() { os.Remove(path) }, nil
}
