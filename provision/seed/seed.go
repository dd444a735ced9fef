// Package seed writes a cloud-init NoCloud seed: an ISO 9660 image with the volume label
// "cidata" holding user-data, meta-data, network-config when present, and the guest agent
// binary as a plain file. Names stay lowercase and short, without Rock Ridge: Linux's isofs
// shows them as written, which is what cloud-init looks for.
package seed

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"

	"github.com/kdomanski/iso9660"
)

// Label is the volume label cloud-init's NoCloud datasource looks for.
const Label = "cidata"

// AgentFile is the agent binary's name on the seed (install.sh looks for it).
const AgentFile = "hearth-agent"

// nameRE: names that survive ISO 9660 level-1 mangling unchanged (lowercase, digits, - and
// _ only, at most 30 characters).
var nameRE = regexp.MustCompile(`^[a-z0-9_-]{1,30}$`)

// TempPrefix starts the name of every file a seed is staged in before it takes its place:
// what a crash leaves with this prefix is litter (holding tokens and keys), never a seed.
const TempPrefix = ".seed-"

// RemoveTemp removes the staging files a crash left in dir and returns their names.
func RemoveTemp(dir string) ([]string, error) {
	left, err := filepath.Glob(filepath.Join(dir, TempPrefix+"*"))
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, p := range left {
		if err := os.RemoveAll(p); err != nil {
			return removed, fmt.Errorf("seed: remove %s: %w", p, err)
		}
		removed = append(removed, p)
	}
	return removed, nil
}

// Write writes an image holding files (name → contents) to path, atomically: it is built
// under a temporary name in the same directory and renamed into place, so a crash never
// leaves a half-written seed where a VM would boot from it.
func Write(path string, files map[string][]byte) error {
	if _, ok := files["user-data"]; !ok {
		return fmt.Errorf("seed: user-data is required")
	}
	if _, ok := files["meta-data"]; !ok {
		return fmt.Errorf("seed: meta-data is required")
	}
	names := make([]string, 0, len(files))
	for n := range files {
		if !nameRE.MatchString(n) {
			return fmt.Errorf("seed: file name %q would be mangled on ISO 9660", n)
		}
		names = append(names, n)
	}
	sort.Strings(names)
	w, err := iso9660.NewWriter()
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	defer w.Cleanup() //nolint:errcheck // temp staging dir
	for _, n := range names {
		if err := w.AddFile(bytes.NewReader(files[n]), n); err != nil {
			return fmt.Errorf("seed: add %s: %w", n, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), TempPrefix+"*.iso")
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	defer os.Remove(tmp.Name()) //nolint:errcheck // gone after the rename
	if err := w.WriteTo(tmp, Label); err != nil {
		tmp.Close()
		return fmt.Errorf("seed: write image: %w", err)
	}
	if err := tmp.Chmod(0o640); err != nil { // it holds tokens and a host key
		tmp.Close()
		return fmt.Errorf("seed: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("seed: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	return nil
}

// Read returns the files of a seed image, by the names a Linux guest sees.
func Read(path string) (map[string][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	img, err := iso9660.OpenImage(f)
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	root, err := img.RootDir()
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	children, err := root.GetChildren()
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	out := map[string][]byte{}
	for _, c := range children {
		if c.IsDir() {
			continue
		}
		var b bytes.Buffer
		if _, err := b.ReadFrom(c.Reader()); err != nil {
			return nil, fmt.Errorf("seed: read %s: %w", c.Name(), err)
		}
		out[c.Name()] = b.Bytes()
	}
	return out, nil
}
