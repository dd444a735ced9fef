package provision

import (
	"fmt"
	"strconv"
	"strings"

	"hearth/app"
)

// Restage gives a provisioned VM's seed, after a rename, a new registration token and a
// new instance id, keeping the guest's host key: cloud-init keeps what it read from a seed
// whose instance id it has seen (it restores its cache), so the new seed carries
// "<vm id>-r<n>", as Incus does on rename, and at its next boot the guest applies the seed
// again (hostname, agent config, callback). It returns the new secrets, sealed.
func (p *Provisioner) Restage(vm *app.VM, sealed, registrationToken string) (string, error) {
	s, err := p.unseal(vm.ID, sealed)
	if err != nil {
		return "", err
	}
	if err := p.checkHostKey(s.HostKeyPrivate, vm); err != nil {
		return "", err
	}
	iid, err := nextInstanceID(vm.ID, s.InstanceID)
	if err != nil {
		return "", err
	}
	return p.seal(vm.ID, secrets{InstanceID: iid, RegistrationToken: registrationToken, HostKeyPrivate: s.HostKeyPrivate})
}

// nextInstanceID is the instance id after cur: the VM id, then <id>-r1, <id>-r2, …
func nextInstanceID(vmID, cur string) (string, error) {
	if cur == vmID {
		return vmID + "-r1", nil
	}
	if n, err := strconv.Atoi(strings.TrimPrefix(cur, vmID+"-r")); err == nil && strings.HasPrefix(cur, vmID+"-r") && n > 0 {
		return vmID + "-r" + strconv.Itoa(n+1), nil
	}
	return "", fmt.Errorf("the current seed's instance id %q is not this VM's", cur)
}
