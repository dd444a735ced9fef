// Package agents embeds the guest agent binaries that `make guest` built, one per
// architecture, for the manager to put on each VM's seed.
package agents

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"hearth/app"
)

// files holds README.md always (so the pattern matches on a fresh clone) and the agents
// when they have been built.
//
//go:embed *
var files embed.FS

const prefix = "hearth-agent-linux-"

// Agent is one embedded binary.
type Agent struct {
	Arch   string // Go's GOARCH: amd64, arm64
	Size   int
	SHA256 string
}

// For returns the agent binary for a GOARCH, or an EUNAVAILABLE error saying how to get one.
func For(arch string) ([]byte, error) {
	b, err := files.ReadFile(prefix + arch)
	if err != nil || len(b) == 0 {
		return nil, app.Errorf(app.EUNAVAILABLE, "this manager was built without a hearth-agent for linux/%s, so it cannot provision VMs; build with make guest build (or create the VM with provisioning off)", arch)
	}
	return b, nil
}

// List returns the embedded agents by architecture.
func List() []Agent {
	var out []Agent
	entries, _ := fs.ReadDir(files, ".")
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		b, _ := files.ReadFile(e.Name())
		sum := sha256.Sum256(b)
		out = append(out, Agent{Arch: strings.TrimPrefix(e.Name(), prefix), Size: len(b), SHA256: hex.EncodeToString(sum[:])})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Arch < out[j].Arch })
	return out
}

// String describes an agent for `hearth version`.
func (a Agent) String() string {
	return fmt.Sprintf("hearth-agent linux/%s, %d bytes, sha256 %s", a.Arch, a.Size, a.SHA256[:16])
}
