package image

import (
	"debug/elf"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hearth/internal/testkit/qemutest"
)

// TestExtractVmlinux: Debian's cloud kernel (a bzImage with an LZ4 payload) yields the ELF
// kernel Firecracker boots; files that are no kernel are named for what they are.
func TestExtractVmlinux(t *testing.T) {
	kernel, _ := qemutest.Kernel(t)
	if k, err := KernelKind(kernel); err != nil || k != "bzImage" {
		t.Fatalf("KernelKind(Debian's kernel) = %q, %v", k, err)
	}
	out := filepath.Join(t.TempDir(), "vmlinux")
	if err := ExtractVmlinux(kernel, out); err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatalf("the extracted kernel is not ELF: %v", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 || f.Entry == 0 {
		t.Errorf("extracted kernel: machine %v entry %#x", f.Machine, f.Entry)
	}
	if k, _ := KernelKind(out); k != "elf" {
		t.Errorf("KernelKind(vmlinux) = %q", k)
	}
	dir := t.TempDir()
	for name, body := range map[string]string{"gz": "\x1f\x8b\x08rest", "script": "#!/bin/sh\n", "empty": ""} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		if _, err := KernelKind(p); err == nil {
			t.Errorf("%s taken for a kernel", name)
		}
		if err := ExtractVmlinux(p, p+".out"); err == nil || !strings.Contains(err.Error(), "not a bzImage") {
			t.Errorf("ExtractVmlinux(%s) = %v", name, err)
		}
	}
}
