package metrics

import (
	"context"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"hearth/app"
	"hearth/guest/api"
	"hearth/guest/collect"
	"hearth/guest/server"
)

// fixtureAgent is a real agent handler over a copy of the agent's 6.18 /proc fixture, with
// a clock the test moves: its vmstat can be rewritten between samples, as the kernel does.
type fixtureAgent struct {
	t       *testing.T
	proc    string
	now     time.Time
	sampler *collect.Sampler
}

func newFixtureAgent(t *testing.T) *fixtureAgent {
	t.Helper()
	dst := t.TempDir()
	src := "../../guest/collect/testdata/kernel-6.18-firecracker"
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
	a := &fixtureAgent{t: t, proc: filepath.Join(dst, "proc"), now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	r := &collect.Reader{ProcRoot: a.proc, SysRoot: filepath.Join(dst, "sys"), PageSize: 4096,
		Interfaces: func() ([]api.Interface, error) { return nil, nil },
		Statfs: func(p string) (uint64, uint64, uint64, error) {
			return 10 << 30, 9_500 << 20, 500 << 20, nil // 93 % used
		},
		Now: func() time.Time { return a.now }}
	a.sampler = collect.NewSampler(r, 5*time.Second, "fixture")
	return a
}

// vmstat sets the counters the next sample reads (in pages and KiB, as the kernel).
func (a *fixtureAgent) vmstat(dirtied, written, pgpgin uint64) {
	a.t.Helper()
	body := "nr_free_pages 1\nnr_dirtied " + itoa(dirtied) + "\nnr_written " + itoa(written) + "\npgpgin " + itoa(pgpgin) +
		"\npgpgout 0\npgmajfault 0\n"
	if err := os.WriteFile(filepath.Join(a.proc, "vmstat"), []byte(body), 0o644); err != nil {
		a.t.Fatal(err)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// TestProgramsWritesAndFilesystems: the story's loop writes 20 MiB into the page cache in
// five seconds and none of it reaches the disk. The collector reports 4 MiB/s written by
// programs (the device rate is the hypervisor's, here none), keeps that rate while the
// agent's reading has not changed, starts over when a counter goes back (the guest
// rebooted), and hands on the agent's filesystems.
func TestProgramsWritesAndFilesystems(t *testing.T) {
	a := newFixtureAgent(t)
	port, ls := listenAll(t, []string{"127.0.0.2"})
	srv := &http.Server{Handler: server.New(a.sampler, server.Options{Token: "hag_io_token_0123456789", Version: "fixture"})}
	go srv.Serve(ls[0])
	t.Cleanup(func() { srv.Close() })
	v := &app.VM{ID: "io", Name: "io", State: app.VMRunning, GuestIP: "127.0.0.2", VCPUs: 1, AgentToken: "hag_io_token_0123456789"}
	c := New(&fleet{vms: []*app.VM{v}}, Options{AgentPort: port, Interval: time.Second})
	round := func() Sample {
		t.Helper()
		c.Round(context.Background())
		s, ok := c.Latest(v)
		if !ok || s.Source != FromAgent {
			t.Fatalf("no agent sample: %+v — %s", s, c.LastError(v.ID))
		}
		return s
	}

	a.vmstat(1000, 500, 100)
	a.sampler.Sample()
	if s := round(); s.ProgWriteBps != nil {
		t.Errorf("a rate from one reading: %v", *s.ProgWriteBps)
	}
	a.now = a.now.Add(5 * time.Second)
	a.vmstat(1000+5120, 500, 100+8) // 20 MiB dirtied, nothing written back, 8 KiB paged in
	a.sampler.Sample()
	s := round()
	if s.ProgWriteBps == nil || *s.ProgWriteBps != 4<<20 || s.WritebackBps == nil || *s.WritebackBps != 0 ||
		s.PageInBps == nil || *s.PageInBps != 8192.0/5 {
		t.Fatalf("rates: programs %s, writeback %s, page-in %s", f(s.ProgWriteBps), f(s.WritebackBps), f(s.PageInBps))
	}
	if pc := c.GuestIO(v); pc == nil || pc.DirtiedBytes != 6120*4096 {
		t.Errorf("cumulative counters: %+v", pc)
	}
	// The manager polls faster than the agent samples: the same reading, the same rate.
	if again := round(); again.ProgWriteBps == nil || *again.ProgWriteBps != 4<<20 {
		t.Errorf("the same reading polled again: %s", f(again.ProgWriteBps))
	}
	// The guest rebooted: its counters start from zero. No rate, never a negative one.
	a.now = a.now.Add(5 * time.Second)
	a.vmstat(10, 5, 1)
	a.sampler.Sample()
	if s := round(); s.ProgWriteBps != nil || s.PageInBps != nil {
		t.Errorf("after a counter went back: programs %s, page-in %s", f(s.ProgWriteBps), f(s.PageInBps))
	}

	fss, at := c.Filesystems(v)
	if len(fss) != 1 || fss[0].Mountpoint != "/" || fss[0].UsedBytes != 9_500<<20 || at.IsZero() {
		t.Errorf("filesystems: %+v at %v", fss, at)
	}
	// Prometheus has the counters and the filesystem, parsed by its own parser.
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(c.Registry(), promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatalf("exposition: %v", err)
	}
	if m := fams["hearth_vm_page_cache_dirtied_bytes_total"]; m == nil || m.GetType() != dto.MetricType_COUNTER || m.Metric[0].GetCounter().GetValue() != 10*4096 {
		t.Errorf("dirtied counter: %v", m)
	}
	if m := fams["hearth_vm_filesystem_used_bytes"]; m == nil || m.Metric[0].GetGauge().GetValue() != 9_500<<20 {
		t.Errorf("filesystem used: %v", m)
	}
	// Another run of the VM: none of the last run's counters or filesystems are current.
	next := *v
	next.PID, next.PIDIdentity = 4242, "boot/1"
	if _, ok := c.Latest(&next); ok {
		t.Error("the previous run's sample is current for the new run")
	}
	if fss, _ := c.Filesystems(&next); fss != nil || c.GuestIO(&next) != nil {
		t.Errorf("the previous run's filesystems or counters are current: %+v", fss)
	}
	if st := c.StatusOf(&next, time.Now()); st.State != StatusWaiting {
		t.Errorf("badge right after a restart: %+v, want waiting", st)
	}
}

func f(p *float64) string {
	if p == nil {
		return "nil"
	}
	return strconv.FormatFloat(*p, 'f', -1, 64)
}
