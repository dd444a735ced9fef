package provision

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v4"
	"golang.org/x/crypto/ssh"

	"hearth/app"
	"hearth/provision/seed"
)

// SealKeyFile is the key, inside the data dir, that seals the secrets each VM's seed
// carries (its registration token and its SSH host key) for the VM's record. The database
// never holds them in plaintext; a copy of it without the data dir cannot render a seed.
const SealKeyFile = "keys/seed-seal.key"

// LoadOrCreateSealKey returns the data dir's seal key (32 random bytes, 0600), creating it
// on first use.
func LoadOrCreateSealKey(dataDir string) ([]byte, error) {
	p := filepath.Join(dataDir, SealKeyFile)
	if b, err := os.ReadFile(p); err == nil {
		if len(b) != 32 {
			return nil, fmt.Errorf("provision: seal key %s: %d bytes, want 32", p, len(b))
		}
		return b, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("provision: seal key: %w", err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) { // another manager made it first: use that one
		return LoadOrCreateSealKey(dataDir)
	} else if err != nil {
		return nil, fmt.Errorf("provision: create seal key: %w", err)
	}
	if _, err := f.Write(key); err != nil {
		f.Close()
		return nil, fmt.Errorf("provision: write seal key: %w", err)
	}
	return key, f.Close()
}

// secrets are what a VM's seed carries that its record must not show: cloud-init applies
// a seed's user-data once per instance id, so every render for one instance id carries
// the same ones.
type secrets struct {
	InstanceID        string `json:"instance_id"`
	RegistrationToken string `json:"registration_token"`
	HostKeyPrivate    string `json:"host_key"`
}

// seal encrypts s for the VM's record (AES-256-GCM, the VM id as additional data: a
// sealed value moved to another VM's record does not open).
func (p *Provisioner) seal(vmID string, s secrets) (string, error) {
	aead, err := p.aead()
	if err != nil {
		return "", err
	}
	plain, _ := json.Marshal(s)
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	return "v1:" + base64.RawStdEncoding.EncodeToString(aead.Seal(nonce, nonce, plain, []byte(vmID))), nil
}

func (p *Provisioner) unseal(vmID, sealed string) (secrets, error) {
	var s secrets
	aead, err := p.aead()
	if err != nil {
		return s, err
	}
	raw, ok := strings.CutPrefix(sealed, "v1:")
	b, err := base64.RawStdEncoding.DecodeString(raw)
	if !ok || err != nil || len(b) < aead.NonceSize() {
		return s, errors.New("the VM's sealed seed secrets are malformed")
	}
	plain, err := aead.Open(nil, b[:aead.NonceSize()], b[aead.NonceSize():], []byte(vmID))
	if err != nil {
		return s, fmt.Errorf("the VM's seed secrets do not open with this data dir's %s (another data dir's key?)", SealKeyFile)
	}
	if err := json.Unmarshal(plain, &s); err != nil || s.InstanceID == "" || s.HostKeyPrivate == "" {
		return s, errors.New("the VM's sealed seed secrets are incomplete")
	}
	return s, nil
}

func (p *Provisioner) aead() (cipher.AEAD, error) {
	if len(p.SealKey) != 32 {
		return nil, errors.New("provision: no seal key configured")
	}
	block, err := aes.NewCipher(p.SealKey)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Adopt reads a seed written whole at create time (before seeds were rendered at start)
// and returns its secrets sealed for the VM's record, so the guest keeps its first seed's
// instance id, registration token and host key.
func (p *Provisioner) Adopt(path string, vm *app.VM) (string, error) {
	files, err := seed.Read(path)
	if err != nil {
		return "", fmt.Errorf("read the seed: %w", err)
	}
	var ud struct {
		SSHKeys struct {
			Private string `yaml:"ed25519_private"`
			Public  string `yaml:"ed25519_public"`
		} `yaml:"ssh_keys"`
		WriteFiles []struct {
			Path    string `yaml:"path"`
			Content string `yaml:"content"`
		} `yaml:"write_files"`
	}
	var md struct {
		InstanceID string `yaml:"instance-id"`
	}
	if err := yaml.Unmarshal(files["user-data"], &ud); err != nil {
		return "", fmt.Errorf("the seed's user-data does not parse: %w", err)
	}
	if err := yaml.Unmarshal(files["meta-data"], &md); err != nil || md.InstanceID == "" {
		return "", fmt.Errorf("the seed's meta-data has no instance id")
	}
	s := secrets{InstanceID: md.InstanceID, HostKeyPrivate: ud.SSHKeys.Private}
	for _, f := range ud.WriteFiles {
		if f.Path == "/etc/hearth-agent.conf" {
			for _, l := range strings.Split(f.Content, "\n") {
				if v, ok := strings.CutPrefix(l, "HEARTH_REGISTRATION_TOKEN="); ok {
					s.RegistrationToken = v
				}
			}
		}
	}
	if err := p.checkHostKey(s.HostKeyPrivate, vm); err != nil {
		return "", err
	}
	return p.seal(vm.ID, s)
}

// checkHostKey says whether priv is the private half of the host key the VM's record pins.
func (p *Provisioner) checkHostKey(priv string, vm *app.VM) error {
	k, err := ssh.ParsePrivateKey([]byte(priv))
	if err != nil || AuthorizedKey(k.PublicKey()) != strings.TrimSpace(vm.HostKey) {
		return errors.New("the seed does not hold the guest's recorded host key")
	}
	return nil
}
