// Package static embeds the files the UI serves: built CSS, vendored htmx, icons. URLs carry a
// content hash (see Path) so browsers can cache them for a year and still see every change.
package static

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"sort"
	"sync"
)

//go:embed css js img
var FS embed.FS

var (
	versionOnce sync.Once
	version     string
)

// Version is a short hash of every embedded file, the same for a given build.
func Version() string {
	versionOnce.Do(func() {
		h := sha256.New()
		var names []string
		fs.WalkDir(FS, ".", func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				names = append(names, p)
			}
			return nil
		})
		sort.Strings(names)
		for _, n := range names {
			b, _ := FS.ReadFile(n)
			h.Write([]byte(n))
			h.Write(b)
		}
		version = hex.EncodeToString(h.Sum(nil))[:12]
	})
	return version
}

// Path returns the versioned URL of an embedded file, e.g. Path("css/app.css").
func Path(name string) string { return "/static/" + Version() + "/" + name }
