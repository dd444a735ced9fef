// Package ocitest makes OCI images for tests: layers from listed entries (whiteouts are
// entries too), images of them for an architecture, and the archives operators import:
// `docker save` tarballs, OCI layouts, tars of layouts.
package ocitest

import (
	"archive/tar"
	"bytes"
	"io"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Ent is one entry of a test layer.
type Ent struct {
	Name, Body, Link string
	Type             byte
	Mode             int64
	UID, GID         int
	Xattrs           map[string]string
}

func Dir(n string) Ent        { return Ent{Name: n, Type: tar.TypeDir, Mode: 0o755} }
func File(n, body string) Ent { return Ent{Name: n, Type: tar.TypeReg, Mode: 0o644, Body: body} }
func Exe(n, body string) Ent  { return Ent{Name: n, Type: tar.TypeReg, Mode: 0o755, Body: body} }
func Symlink(n, target string) Ent {
	return Ent{Name: n, Type: tar.TypeSymlink, Link: target, Mode: 0o777}
}
func Hardlink(n, target string) Ent { return Ent{Name: n, Type: tar.TypeLink, Link: target} }

// LayerTar is the tar of entries, as a layer holds it.
func LayerTar(t testing.TB, entries ...Ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.Name, Typeflag: e.Type, Mode: e.Mode, Uid: e.UID, Gid: e.GID, Linkname: e.Link,
			Size: int64(len(e.Body)), ModTime: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC), Format: tar.FormatPAX}
		if e.Type != tar.TypeReg {
			h.Size = 0
		}
		for k, v := range e.Xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte(e.Body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

// Layer is a layer of entries.
func Layer(t testing.TB, entries ...Ent) v1.Layer {
	t.Helper()
	b := LayerTar(t, entries...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Image is a linux/arch image of layers, the first the lowest.
func Image(t testing.TB, arch string, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := img.ConfigFile()
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", arch
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	return img
}

// DockerSave writes img as `docker save` would and returns the file.
func DockerSave(t testing.TB, img v1.Image) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "saved.tar")
	tag, _ := name.NewTag("example.test/guest:1")
	if err := tarball.WriteToFile(p, tag, img); err != nil {
		t.Fatal(err)
	}
	return p
}

// Layout writes img into an OCI layout directory for linux/arch and returns it.
func Layout(t testing.TB, img v1.Image, arch string) string {
	t.Helper()
	p, err := layout.Write(filepath.Join(t.TempDir(), "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithPlatform(v1.Platform{OS: "linux", Architecture: arch})); err != nil {
		t.Fatal(err)
	}
	return string(p)
}

// TarDir writes dir as a tar file (an OCI layout as `docker buildx --output type=oci` does).
func TarDir(t testing.TB, dir string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "layout.tar")
	if out, err := exec.Command("tar", "-C", dir, "-cf", p, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	return p
}
