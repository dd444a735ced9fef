// Package cloudinittest checks rendered cloud-init documents with Debian's real cloud-init.
package cloudinittest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"hearth/internal/testkit/testenv"
)

// Schema runs `cloud-init schema` on a rendered user-data and fails the test unless it is
// valid cloud-config.
func Schema(t *testing.T, userData []byte) {
	t.Helper()
	ci, err := exec.LookPath("cloud-init")
	if err != nil {
		testenv.Missing(t, "cloud-init", err)
	}
	p := filepath.Join(t.TempDir(), "user-data")
	os.WriteFile(p, userData, 0o600)
	out, err := exec.Command(ci, "schema", "--config-file", p).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Valid cloud-config") {
		t.Fatalf("cloud-init schema: %v\n%s", err, out)
	}
	t.Logf("cloud-init schema: %s", strings.TrimSpace(string(out)))
}
