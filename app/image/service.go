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

// Service records, builds, imports and deletes this node's images; it lists every node's.
type Service struct {
	DB      *store.DB
	Node    string // this node: the images made here are its own
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

// free checks that no files are under the image's name (a record deleted by hand leaves
// them), and makes the images directory.
func (s *Service) free(name string) error {
	if err := os.MkdirAll(s.root(), 0o750); err != nil {
		return err
	}
	if _, err := os.Stat(s.Dir(name)); err == nil {
		return app.Errorf(app.ECONFLICT, "%s already holds files; an image named %s is left from before: delete it first", s.Dir(name), name)
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

// List returns every node's images, newest first.
func (s *Service) List(ctx context.Context) ([]*app.Image, error) { return s.DB.Images(ctx) }

// Get returns node's image (this node's for ""), with the VMs made from it.
func (s *Service) Get(ctx context.Context, node, name string) (*app.Image, error) {
	if node == "" {
		node = s.Node
	}
	return s.DB.Image(ctx, node, name)
}

// Delete removes one of this node's images that no VM uses (ECONFLICT naming them
// otherwise), and its files. An image being made cannot be deleted until it has finished;
// another node's image is deleted on that node, where its files are.
func (s *Service) Delete(ctx context.Context, node, name string, by app.Actor) error {
	if node != "" && node != s.Node {
		return app.Errorf(app.ECONFLICT, "image %s is node %s's: its files are in that node's data dir; delete it there", name, node)
	}
	im, err := s.DB.Image(ctx, s.Node, name)
	if err != nil {
		return err
	}
	if im.State == app.ImageBuilding {
		return app.Errorf(app.ECONFLICT, "image %s is still being made; wait for it to finish", name)
	}
	if err := s.DB.DeleteImage(ctx, im.Node, name, entry(by, app.AuditImageDelete, "deleted image "+name)); err != nil {
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
	if _, err := s.DB.FailBuildingImages(ctx, s.Node, "the manager stopped while this image was being made; make it again"); err != nil {
		return err
	}
	left, _ := filepath.Glob(filepath.Join(s.root(), ".making-*"))
	uploads, _ := filepath.Glob(filepath.Join(s.root(), ".upload-*"))
	for _, p := range append(left, uploads...) {
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	return nil
}

// MaxUpload bounds an uploaded archive.
const MaxUpload = 32 << 30

// NewUpload makes the file an uploaded archive is written to, beside the images (same
// filesystem, removed by StartOCI's job or, after a crash, by Sweep).
func (s *Service) NewUpload() (*os.File, error) {
	if err := os.MkdirAll(s.root(), 0o750); err != nil {
		return nil, err
	}
	return os.CreateTemp(s.root(), ".upload-*.tar")
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

// launch runs job on a copy of im (the caller keeps the record it returns), counted by Wait.
func (s *Service) launch(im *app.Image, job func(*app.Image)) {
	mine := *im
	mine.Steps = append([]app.JobStep(nil), im.Steps...)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		job(&mine)
	}()
}

// jobContext bounds a whole build or import (Timeout, default 30 minutes).
func (s *Service) jobContext() (context.Context, context.CancelFunc) {
	timeout := s.Timeout
	if timeout == 0 {
		timeout = 30 * time.Minute
	}
	return context.WithTimeout(context.Background(), timeout)
}

// progress is how a job saves its steps and log as it goes: step marks a step running
// (and the one before done); logLine keeps a line in the tail, which is saved with each
// step and every few seconds, not each line (a build prints thousands).
func (s *Service) progress(ctx context.Context, im *app.Image) (step, logLine func(string), tail *logTail) {
	var mu sync.Mutex
	tail = &logTail{}
	save := func() {
		mu.Lock()
		defer mu.Unlock()
		im.Log = tail.String()
		if err := s.DB.UpdateImage(ctx, im, nil); err != nil && ctx.Err() == nil {
			s.logger().Warn("save image progress", "image", im.Name, "error", err)
		}
	}
	current := -1
	step = func(name string) {
		for i := range im.Steps {
			if im.Steps[i].Name == name {
				if current >= 0 {
					im.Steps[current].State = app.JobDone
				}
				im.Steps[i].State, current = app.JobRunning, i
			}
		}
		save()
	}
	lastSave := time.Now()
	logLine = func(line string) {
		tail.add(line)
		if time.Since(lastSave) > 2*time.Second {
			lastSave = time.Now()
			save()
		}
	}
	return step, logLine, tail
}
