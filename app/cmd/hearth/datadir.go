package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"hearth/app"
)

// lockFile in the data dir is held (flock) by the manager serving from it. The lock dies
// with its holder, so a crash never leaves it behind; a second manager on the same data
// dir is refused, since it would re-attach the same VMs and sweep the first one's files.
const lockFile = "hearth.lock"

// lockDataDir takes the data dir's lock, or says who holds it.
func lockDataDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create the data dir: %w", err)
	}
	p := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := strings.TrimSpace(string(b[:n]))
			return nil, fmt.Errorf("another hearth serve (pid %s) is using the data dir %s", holder, dir)
		}
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	f.Truncate(0)                                        //nolint:errcheck // the pid is for the message only
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0) //nolint:errcheck
	return f, nil
}

// tempDir clears and creates the manager's own temporary directory, inside the data dir:
// what a crash leaves there (seeds being staged hold tokens and host keys) is removed at
// the next start, which a shared /tmp would not allow. The caller holds the data dir's lock.
func tempDir(dataDir string) (string, error) {
	p := filepath.Join(dataDir, "tmp")
	if err := os.RemoveAll(p); err != nil {
		return "", fmt.Errorf("clear %s: %w", p, err)
	}
	if err := os.MkdirAll(p, 0o700); err != nil {
		return "", fmt.Errorf("create %s: %w", p, err)
	}
	return p, nil
}

// writeProbe tells /healthz whether the manager can still write: a row in the database and
// a synced file in the data dir. /healthz is unauthenticated, so the result is kept for a
// few seconds: polling it cannot turn into a stream of fsyncs.
type writeProbe struct {
	db      interface{ ProbeWrite(context.Context) error }
	dataDir string

	mu  sync.Mutex
	at  time.Time
	err error
}

const probeEvery = 5 * time.Second

func (p *writeProbe) check(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.at.IsZero() && time.Since(p.at) < probeEvery {
		return p.err
	}
	p.at, p.err = time.Now(), p.probe(ctx)
	return p.err
}

func (p *writeProbe) probe(ctx context.Context) error {
	if err := p.db.ProbeWrite(ctx); err != nil {
		return err
	}
	f, err := os.CreateTemp(p.dataDir, ".write-probe-*")
	if err != nil {
		return p.noSpace(err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(make([]byte, 4096))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return p.noSpace(err)
}

func (p *writeProbe) noSpace(err error) error {
	if app.NoSpace(err) {
		return app.FullDataDir()
	}
	return err
}
