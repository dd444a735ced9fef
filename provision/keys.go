// Package provision is the toolbox that puts the guest agent into VMs, knowing nothing of
// the manager's use cases: the Provisioner renders and writes a VM's cloud-init seed
// (cloudinit, seed) where it is told; sshinstall installs into running VMs over SSH; this
// file holds the SSH keys involved. The use cases that call them are app/vm and
// app/install.
package provision

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
)

// ManagerKeyFile is the manager's SSH key inside the data dir.
const ManagerKeyFile = "ssh/hearth_ed25519"

// LoadOrCreateManagerKey returns the manager's SSH key, creating it (0600) on first use. Its
// public half is authorised in every provisioned guest for user hearth.
func LoadOrCreateManagerKey(dataDir string) (ssh.Signer, error) {
	p := filepath.Join(dataDir, ManagerKeyFile)
	if b, err := os.ReadFile(p); err == nil {
		s, err := ssh.ParsePrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("provision: manager key %s: %w", p, err)
		}
		return s, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("provision: manager key: %w", err)
	}
	priv, _, err := NewKeyPair("hearth-manager")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	// O_EXCL: two managers starting at once on one data dir must not overwrite each other.
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("provision: create manager key: %w", err)
	}
	if _, err := f.WriteString(priv); err != nil {
		f.Close()
		return nil, fmt.Errorf("provision: write manager key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return ssh.ParsePrivateKey([]byte(priv))
}

// NewKeyPair makes an ed25519 key: the private half in OpenSSH PEM form, the public half as
// an authorized_keys line without newline.
func NewKeyPair(comment string) (privPEM, pubLine string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("provision: generate key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return "", "", fmt.Errorf("provision: marshal key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", "", err
	}
	return string(pem.EncodeToMemory(block)), AuthorizedKey(sshPub), nil
}

// AuthorizedKey is a public key as an authorized_keys line without the newline.
func AuthorizedKey(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}
