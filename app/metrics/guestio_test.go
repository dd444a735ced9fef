package metrics

import (
	"context"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"hearth/app"
	"hearth/internal/testkit/agenttest"
)

// TestProgramsWritesAndFilesystems: the story's loop writes 20 MiB into the page cache in
// five seconds and none of it reaches the disk. The collector reports 4 MiB/s written by
// programs (the device rate is the hypervisor's, here none), keeps that rate while the
// agent's reading has not changed, starts over when a counter goes back (the guest
// rebooted), and hands on the agent's filesystems.
func TestProgramsWritesAndFilesystems(t *testing.T) {
	a := agenttest.New(t)
	a.Size, a.Used, a.Avail = 10<<30, 9_500<<20, 500<<20
	port, ls := listenAll(t, []string{"127.0.0.2"})
	a.Serve(ls[0], "hag_io_token_0123456789")
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

	a.VMStat(1000, 500, 100)
	a.Sample()
	if s := round(); s.ProgWriteBps != nil {
		t.Errorf("a rate from one reading: %v", *s.ProgWriteBps)
	}
	a.Now = a.Now.Add(5 * time.Second)
	a.VMStat(1000+5120, 500, 100+8) // 20 MiB dirtied, nothing written back, 8 KiB paged in
	a.Sample()
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
	a.Now = a.Now.Add(5 * time.Second)
	a.VMStat(10, 5, 1)
	a.Sample()
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
