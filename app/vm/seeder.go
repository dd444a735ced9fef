package vm

import (
	"context"
	"net/netip"

	"errors"
	"os"

	"hearth/app/hypervisor/hostnet"

	"hearth/app"
)

// Seeder builds the cloud-init seed that carries the guest agent into a VM; the manager's
// is provision.Provisioner. It is an interface so that VM rules do not depend on how seeds
// are made.
type Seeder interface {
	// Check says whether seeds can be built now (an agent for the guests' arch is at hand).
	Check() error
	// Prepare fills the VM's agent token and host key, returning the host's private key,
	// which only the seed ever holds.
	Prepare(vm *app.VM) (hostKeyPrivate string, err error)
	WriteSeed(f app.VMFiles, vm *app.VM, registrationToken, hostKeyPrivate string) error
	// Restage renders the seed again for vm's new name with a new registration token, so the
	// guest takes the name at its next boot; commit puts it in place, abort discards it.
	Restage(f app.VMFiles, vm *app.VM, registrationToken string) (commit func() error, abort func(), err error)
	// RemoveTemp removes what a crash left of seeds being written, and says what.
	RemoveTemp(f app.VMFiles) ([]string, error)
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

// SeedPath returns the path of a provisioned VM's seed image.
func (s *Service) SeedPath(ctx context.Context, id string) (string, error) {
	vm, err := s.db.VM(ctx, id)
	if err != nil {
		return "", err
	}
	if !vm.Provisioned || s.seeder == nil {
		return "", app.Errorf(app.ENOTFOUND, "VM %s was created without a cloud-init seed", vm.Name)
	}
	p := s.files(id).Seed()
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return "", app.Errorf(app.ENOTFOUND, "the seed of VM %s is missing from the data dir", vm.Name)
	}
	return p, nil
}
