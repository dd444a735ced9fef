package provision

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/crypto/ssh"

	"hearth/app"
	"hearth/provision/agents"
	"hearth/provision/cloudinit"
	"hearth/provision/seed"
)

// Provisioner builds and removes VMs' seeds. It implements vm.Seeder.
type Provisioner struct {
	PublicURL  string     // the manager as guests reach it
	ManagerKey ssh.Signer // authorised for user hearth in guests
	Arch       string     // GOARCH of the guests' agent; "" means the host's
	Gateway    string     // the bridge's address: default route of guests with a static address
	// Agent returns the agent binary for an arch; nil means the embedded ones.
	Agent func(arch string) ([]byte, error)
	// SealKey (32 bytes, LoadOrCreateSealKey) seals each VM's seed secrets for its record.
	SealKey []byte
}

func (p *Provisioner) arch() string {
	if p.Arch != "" {
		return p.Arch
	}
	return runtime.GOARCH
}

func (p *Provisioner) agent() ([]byte, error) {
	if p.Agent != nil {
		return p.Agent(p.arch())
	}
	return agents.For(p.arch())
}

// Check says whether VMs can be provisioned: an agent must be at hand.
func (p *Provisioner) Check() error {
	_, err := p.agent()
	return err
}

// Prepare gives a new VM its agent token and its SSH host key pair, and returns the
// secrets of its seed (the registration token, the host's private key, its first instance
// id) sealed for the VM's record. The public key is what the installer will pin.
func (p *Provisioner) Prepare(vm *app.VM, registrationToken string) (sealed string, err error) {
	priv, pub, err := NewKeyPair("hearth-" + vm.Name)
	if err != nil {
		return "", err
	}
	token, _ := app.NewToken(app.PrefixAgentToken)
	vm.AgentToken, vm.HostKey, vm.HostKeySource, vm.Provisioned = token, pub, "injected", true
	return p.seal(vm.ID, secrets{InstanceID: vm.ID, RegistrationToken: registrationToken, HostKeyPrivate: priv})
}

// Render writes the VM's seed to path (atomically) from its record, its sealed secrets and
// the agent: the same files for every render of one instance id.
func (p *Provisioner) Render(path string, vm *app.VM, sealed string) error {
	s, err := p.unseal(vm.ID, sealed)
	if err != nil {
		return err
	}
	return p.writeSeed(path, vm, s.InstanceID, s.RegistrationToken, s.HostKeyPrivate)
}

// RenderTemp renders the VM's seed into a new file of dir named with seed.TempPrefix
// (litter for RemoveTemp if a crash cuts it short) and returns its path: a download's
// own copy, which the caller removes.
func (p *Provisioner) RenderTemp(dir string, vm *app.VM, sealed string) (string, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", fmt.Errorf("provision: %w", err)
	}
	f, err := os.CreateTemp(dir, seed.TempPrefix+"download-*.iso")
	if err != nil {
		return "", fmt.Errorf("provision: %w", err)
	}
	f.Close()
	if err := p.Render(f.Name(), vm, sealed); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

func (p *Provisioner) writeSeed(path string, vm *app.VM, instanceID, registrationToken, hostKeyPrivate string) error {
	agent, err := p.agent()
	if err != nil {
		return err
	}
	docs, err := cloudinit.Render(cloudinit.Params{VMID: vm.ID, InstanceID: instanceID, Hostname: vm.Name, MAC: vm.MAC,
		ManagerURL: p.PublicURL, AgentToken: vm.AgentToken, RegistrationToken: registrationToken,
		ManagerSSHKey: AuthorizedKey(p.ManagerKey.PublicKey()), HostKeyPrivate: hostKeyPrivate, HostKeyPublic: vm.HostKey,
		Static: p.static(vm)})
	if err != nil {
		return err
	}
	files := map[string][]byte{"user-data": docs.UserData, "meta-data": docs.MetaData, seed.AgentFile: agent}
	if docs.NetworkConfig != nil {
		files["network-config"] = docs.NetworkConfig
	}
	if err := seed.Write(path, files); err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	return nil
}

// static is the guest's fixed address for network-config, nil for DHCP.
func (p *Provisioner) static(vm *app.VM) *cloudinit.Static {
	if vm.Address == "" {
		return nil
	}
	return &cloudinit.Static{Address: vm.Address, Gateway: p.Gateway}
}

// RemoveTemp removes what a crash left of seeds being written in dir.
func (p *Provisioner) RemoveTemp(dir string) ([]string, error) {
	return seed.RemoveTemp(dir)
}
