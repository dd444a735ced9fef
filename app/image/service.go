// Package image is the image use case: images as records (what VMs boot from), built from
// Debian's packages or imported, as background jobs whose steps and log the pages show; and
// deleting them, which is refused while VMs use them. The tools are provision/image's; the
// files live in the data dir's images/<name>/.
package image

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"hearth/app"
	"hearth/app/store"
	pimage "hearth/provision/image"
)

// Service records, builds, imports and deletes images.
type Service struct {
	DB      *store.DB
	DataDir string // images live in DataDir/images/<name>/
	Logger  *slog.Logger
	// Build runs a build (provision/image.Build); tests may put a stand-in here.
	Build   func(ctx context.Context, spec pimage.Spec, dir string, step, log func(string)) ([]app.ImageFile, error)
	Timeout time.Duration // a whole build or import (default 30 min)

	wg sync.WaitGroup
}

// nameRE: an image's name is a directory name and a word in forms: lowercase letters,
// digits, '.', '_', '-', starting and ending with a letter or digit.
var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$`)

func checkName(name string) error {
	if !nameRE.MatchString(name) {
		return app.Invalid(map[string]string{"name": "must be 1–63 lowercase letters, digits, '.', '_' or '-', starting and ending with a letter or digit"})
	}
	return nil
}

// Dir is where the named image's files are.
func (s *Service) Dir(name string) string { return filepath.Join(s.root(), name) }

func (s *Service) root() string {
	abs, err := filepath.Abs(s.DataDir)
	if err != nil {
		abs = s.DataDir
	}
	return filepath.Join(abs, "images")
}

// staging is where an image is made before it takes its name: a build cut short never
// leaves a directory under the image's name.
func (s *Service) staging(name string) string { return filepath.Join(s.root(), ".making-"+name) }

// List returns every image, newest first.
func (s *Service) List(ctx context.Context) ([]*app.Image, error) { return s.DB.Images(ctx) }

// Get returns one image, with the VMs made from it.
func (s *Service) Get(ctx context.Context, name string) (*app.Image, error) {
	return s.DB.Image(ctx, name)
}

// Delete removes an image that no VM uses (ECONFLICT naming them otherwise), and its files.
// An image being made cannot be deleted until it has finished.
func (s *Service) Delete(ctx context.Context, name string, by app.Actor) error {
	im, err := s.DB.Image(ctx, name)
	if err != nil {
		return err
	}
	if im.State == app.ImageBuilding {
		return app.Errorf(app.ECONFLICT, "image %s is still being made; wait for it to finish", name)
	}
	if err := s.DB.DeleteImage(ctx, name, entry(by, app.AuditImageDelete, "deleted image "+name)); err != nil {
		return err
	}
	if err := os.RemoveAll(s.Dir(name)); err != nil {
		return fmt.Errorf("image deleted, but its files remain: %w", err)
	}
	return nil
}

// Sweep runs at manager start: images left being made by a previous manager failed, and
// what they left is removed.
func (s *Service) Sweep(ctx context.Context) error {
	if _, err := s.DB.FailBuildingImages(ctx, "the manager stopped while this image was being made; make it again"); err != nil {
		return err
	}
	left, _ := filepath.Glob(filepath.Join(s.root(), ".making-*"))
	for _, p := range left {
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	return nil
}

// Wait blocks until the jobs running end (shutdown, tests).
func (s *Service) Wait() { s.wg.Wait() }

func (s *Service) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func entry(by app.Actor, action, detail string) *app.AuditEntry {
	return &app.AuditEntry{Actor: by.String(), Action: action, Addr: by.Addr, Detail: detail}
}

// logTail keeps the newest lines of a job's log, bounded.
type logTail struct {
	mu    sync.Mutex
	lines []string
}

func (l *logTail) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
	if len(l.lines) > 40 {
		l.lines = l.lines[len(l.lines)-40:]
	}
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}
