// Package agenttest is a real guest agent for the manager's tests whose /proc the test
// writes: the agent's own 6.18 fixture copied to a scratch root, a clock the test moves,
// and the agent's real HTTP handler on a loopback address.
package agenttest

import (
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"hearth/guest/api"
	"hearth/guest/collect"
	"hearth/guest/server"
)

// Agent is a running fixture agent.
type Agent struct {
	t       *testing.T
	proc    string
	Now     time.Time // what the agent's clock says at the next sample
	Sampler *collect.Sampler
	// Statfs answers for every filesystem of the fixture's mountinfo (the root): size,
	// used, available.
	Size, Used, Avail uint64
}

// New copies the fixture and makes the agent; nothing is served until Serve.
func New(t *testing.T) *Agent {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	src := filepath.Join(filepath.Dir(file), "../../../guest/collect/testdata/kernel-6.18-firecracker")
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{t: t, proc: filepath.Join(dst, "proc"), Now: time.Now().UTC(), Size: 10 << 30, Used: 4 << 30, Avail: 5 << 30}
	r := &collect.Reader{ProcRoot: a.proc, SysRoot: filepath.Join(dst, "sys"), PageSize: 4096,
		Interfaces: func() ([]api.Interface, error) { return nil, nil },
		Statfs:     func(string) (uint64, uint64, uint64, error) { return a.Size, a.Used, a.Avail, nil },
		Now:        func() time.Time { return a.Now }}
	a.Sampler = collect.NewSampler(r, 5*time.Second, "fixture")
	return a
}

// VMStat sets the page-cache counters the next sample reads, in the kernel's units: pages
// dirtied and written back, KiB paged in.
func (a *Agent) VMStat(dirtied, written, pagedIn uint64) {
	a.t.Helper()
	u := func(n uint64) string { return strconv.FormatUint(n, 10) }
	body := "nr_free_pages 1\nnr_dirtied " + u(dirtied) + "\nnr_written " + u(written) + "\npgpgin " + u(pagedIn) + "\npgpgout 0\npgmajfault 0\n"
	if err := os.WriteFile(filepath.Join(a.proc, "vmstat"), []byte(body), 0o644); err != nil {
		a.t.Fatal(err)
	}
}

// AdvanceCPU moves /proc/stat on to the fixture's later reading (stat.after), so the next
// sample has a CPU share; it can be called once.
func (a *Agent) AdvanceCPU() {
	a.t.Helper()
	if err := os.Rename(filepath.Join(a.proc, "stat.after"), filepath.Join(a.proc, "stat")); err != nil {
		a.t.Fatal(err)
	}
}

// Sample takes a reading at Now.
func (a *Agent) Sample() { a.Sampler.Sample() }

// Serve serves the agent's real handler with token on l until the test ends.
func (a *Agent) Serve(l net.Listener, token string) {
	srv := &http.Server{Handler: server.New(a.Sampler, server.Options{Token: token, Version: "fixture"})}
	go srv.Serve(l) //nolint:errcheck // ends with Close
	a.t.Cleanup(func() { srv.Close() })
}
