package provision

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v4"

	"hearth/app"
	"hearth/provision/seed"
)

// Restage renders a provisioned VM's seed again after a rename: the new hostname, a new
// registration token, and the guest's host key and agent token as before. cloud-init keeps
// what it read from a seed whose instance id it has seen (it restores its cache), so the
// new seed carries a new instance id, "<vm id>-r<n>", as Incus does on rename: at its next
// boot the guest applies the seed again (hostname, agent config, callback). The seed is
// written beside the current one; commit puts it in place, abort removes it.
func (p *Provisioner) Restage(f app.VMFiles, vm *app.VM, registrationToken string) (commit func() error, abort func(), err error) {
	path := f.Seed()
	old, err := seed.Read(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read the current seed: %w", err)
	}
	var ud struct {
		SSHKeys struct {
			Private string `yaml:"ed25519_private"`
			Public  string `yaml:"ed25519_public"`
		} `yaml:"ssh_keys"`
	}
	if err := yaml.Unmarshal(old["user-data"], &ud); err != nil {
		return nil, nil, fmt.Errorf("the current seed's user-data does not parse: %w", err)
	}
	if ud.SSHKeys.Private == "" || strings.TrimSpace(ud.SSHKeys.Public) != strings.TrimSpace(vm.HostKey) {
		return nil, nil, errors.New("the current seed does not hold the guest's recorded host key")
	}
	var md struct {
		InstanceID string `yaml:"instance-id"`
	}
	if err := yaml.Unmarshal(old["meta-data"], &md); err != nil {
		return nil, nil, fmt.Errorf("the current seed's meta-data does not parse: %w", err)
	}
	iid, err := nextInstanceID(vm.ID, md.InstanceID)
	if err != nil {
		return nil, nil, err
	}
	next := filepath.Join(f.Dir, seed.TempPrefix+"next.iso")
	if err := p.writeSeed(next, vm, iid, registrationToken, ud.SSHKeys.Private); err != nil {
		return nil, nil, err
	}
	return func() error { return os.Rename(next, path) }, func() { os.Remove(next) }, nil
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
