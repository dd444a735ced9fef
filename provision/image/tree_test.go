package image

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"hearth/internal/testkit/ocitest"
)

// FuzzApplyLayer: any bytes as a layer, applied twice over a tree beside a directory the
// layers must never reach: no panic, and nothing outside the tree changes, whatever the
// names, links and whiteouts say.
func FuzzApplyLayer(f *testing.F) {
	f.Add(ocitest.LayerTar(f, ocitest.Dir("etc/"), ocitest.File("etc/x", "x"), ocitest.Symlink("out", "/"), ocitest.File("out/pwned", "p")))
	f.Add(ocitest.LayerTar(f, ocitest.Symlink("up", "../.."), ocitest.File("up/sibling/pwned", "p"), ocitest.Hardlink("h", "../sibling/keep")))
	f.Add(ocitest.LayerTar(f, ocitest.File(".wh.etc", ""), ocitest.File("a/.wh..wh..opq", ""), ocitest.File("../../sibling/keep", "over")))
	f.Add([]byte("not a tar at all"))
	f.Fuzz(func(t *testing.T, layer []byte) {
		base := t.TempDir()
		sibling := filepath.Join(base, "sibling")
		os.MkdirAll(sibling, 0o755)
		os.WriteFile(filepath.Join(sibling, "keep"), []byte("keep"), 0o644)
		tr, err := newTree(filepath.Join(base, "tree"), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		defer tr.close()
		tr.apply(bytes.NewReader(layer)) //nolint:errcheck // refusing is fine; escaping is not
		tr.apply(bytes.NewReader(layer)) //nolint:errcheck
		tr.settle()
		entries, _ := os.ReadDir(sibling)
		got, _ := os.ReadFile(filepath.Join(sibling, "keep"))
		if len(entries) != 1 || string(got) != "keep" {
			t.Fatalf("a layer reached outside the tree: %v %q", entries, got)
		}
		if st, err := os.Lstat(filepath.Join(sibling, "keep")); err != nil || !st.Mode().IsRegular() || st.Mode().Perm() != 0o644 {
			t.Fatalf("a layer changed a file outside the tree: %v %v", st, err)
		}
	})
}
