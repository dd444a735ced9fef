package seed

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"hearth/internal/testkit/testenv"
)

func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		testenv.Missing(t, name, err)
	}
	return p
}

func sampleFiles(t *testing.T) map[string][]byte {
	agent := make([]byte, 3<<20+17) // an odd size spanning many sectors
	rand.Read(agent)
	return map[string][]byte{
		"user-data":      []byte("#cloud-config\nruncmd:\n  - [true]\n"),
		"meta-data":      []byte("instance-id: \"abc\"\nlocal-hostname: \"web-1\"\n"),
		"network-config": []byte("version: 2\n"),
		AgentFile:        agent,
	}
}

// TestSeedImage checks the image the way a guest would meet it: blkid sees an iso9660
// volume labelled cidata, isoinfo lists exactly our names, and every file extracted with
// isoinfo equals its source byte for byte.
func TestSeedImage(t *testing.T) {
	blkid, isoinfo := tool(t, "blkid"), tool(t, "isoinfo")
	files := sampleFiles(t)
	p := filepath.Join(t.TempDir(), "vm", "seed.iso")
	if err := Write(p, files); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(blkid, "-p", "-o", "export", p).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "LABEL=cidata\n") || !strings.Contains(string(out), "TYPE=iso9660\n") {
		t.Fatalf("blkid: %v\n%s", err, out)
	}
	listing, err := exec.Command(isoinfo, "-l", "-i", p).CombinedOutput()
	if err != nil {
		t.Fatalf("isoinfo -l: %v\n%s", err, listing)
	}
	t.Logf("isoinfo -l:\n%s", listing)
	var names []string
	entry := regexp.MustCompile(`\s(\S+);1\s*$`)
	for _, l := range strings.Split(string(listing), "\n") {
		if m := entry.FindStringSubmatch(l); m != nil {
			names = append(names, m[1])
		}
	}
	sort.Strings(names)
	if got := strings.Join(names, " "); got != "hearth-agent meta-data network-config user-data" {
		t.Errorf("isoinfo lists %q", got)
	}
	for name, want := range files {
		got, err := exec.Command(isoinfo, "-i", p, "-x", "/"+name+";1").Output()
		if err != nil {
			t.Fatalf("isoinfo -x %s: %v", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s extracted: %d bytes, differs from its %d-byte source", name, len(got), len(want))
		}
	}
	// Our own reader agrees.
	read, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		if !bytes.Equal(read[name], want) {
			t.Errorf("Read: %s differs", name)
		}
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o640 {
		t.Errorf("seed mode %v, want 0640 (it holds secrets)", st.Mode().Perm())
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".seed-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestWriteRefuses(t *testing.T) {
	dir := t.TempDir()
	for name, files := range map[string]map[string][]byte{
		"no user-data": {"meta-data": nil},
		"uppercase":    {"user-data": nil, "meta-data": nil, "Agent": nil},
		"dotted":       {"user-data": nil, "meta-data": nil, "agent.bin": nil},
		"long":         {"user-data": nil, "meta-data": nil, strings.Repeat("a", 31): nil},
	} {
		p := filepath.Join(dir, name+".iso")
		if err := Write(p, files); err == nil {
			t.Errorf("%s: written", name)
		}
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s: a file was left at the destination", name)
		}
	}
}
