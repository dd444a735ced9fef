package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"hearth/app/store"
	"hearth/internal/testkit/storetest"
)

func f(v float64) *float64 { return &v }

// TestCompaction: raw samples older than 24 h become one-minute averages (merged across
// runs, weighted by count), and averages older than 7 days go.
func TestCompaction(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
		old := now.Add(-25 * time.Hour).Truncate(time.Minute)
		rows := []store.SampleRow{
			{VMID: "a", At: old.Add(5 * time.Second), Source: "agent", CPU: f(10), Mem: f(50)},
			{VMID: "a", At: old.Add(15 * time.Second), Source: "agent", CPU: f(30), Mem: f(50)},
			{VMID: "a", At: old.Add(25 * time.Second), Source: "host", CPU: f(20)}, // no memory from the host
			{VMID: "b", At: old.Add(5 * time.Second), Source: "agent", CPU: f(90)},
			{VMID: "c", At: old.Add(5 * time.Second), Source: "agent", CPU: f(70)},      // ties across a batch edge
			{VMID: "a", At: now.Add(-time.Hour), Source: "agent", CPU: f(1), Mem: f(1)}, // recent: stays raw
		}
		if err := db.InsertSamples(ctx, rows); err != nil {
			t.Fatal(err)
		}
		// Two batches of 2: the minute for "a" is written, then merged.
		n1, err := db.CompactSamples(ctx, now, 24*time.Hour, 7*24*time.Hour, 2)
		if err != nil {
			t.Fatal(err)
		}
		n2, _ := db.CompactSamples(ctx, now, 24*time.Hour, 7*24*time.Hour, 2)
		n3, _ := db.CompactSamples(ctx, now, 24*time.Hour, 7*24*time.Hour, 2)
		if n1+n2+n3 != 5 {
			t.Errorf("folded %d+%d+%d, want 5", n1, n2, n3)
		}
		// Three rows share the first timestamp and the batch is 2: none may vanish unfolded.
		for _, vm := range []string{"b", "c"} {
			if ms, _ := db.Minutes(ctx, vm, old.Add(-time.Hour)); len(ms) != 1 || ms[0].N != 1 {
				t.Errorf("minute of %s: %+v", vm, ms)
			}
		}
		ms, _ := db.Minutes(ctx, "a", old.Add(-time.Hour))
		if len(ms) != 1 || ms[0].N != 3 || *ms[0].CPU != 20 || *ms[0].Mem != 50 {
			t.Errorf("minute of a: %+v (cpu %v mem %v)", ms, ms[0].CPU, ms[0].Mem)
		}
		raw, _ := db.Samples(ctx, "a", old.Add(-time.Hour))
		if len(raw) != 1 || *raw[0].CPU != 1 {
			t.Errorf("raw left for a: %+v", raw)
		}
		// A week later the average expires too.
		if _, err := db.CompactSamples(ctx, now.Add(7*24*time.Hour), 24*time.Hour, 7*24*time.Hour, 100); err != nil {
			t.Fatal(err)
		}
		if ms, _ := db.Minutes(ctx, "b", old.Add(-time.Hour)); len(ms) != 0 {
			t.Errorf("expired minutes kept: %+v", ms)
		}
	})
}

// TestLatestSamplesOfMany: one query gives each VM's newest sample since t (a VM with only
// older ones, or none, is absent), and the samples of each since t, oldest first; more
// VMs than one IN list holds are read in parts.
func TestLatestSamplesOfMany(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		now := time.Now().UTC().Truncate(time.Second)
		rows := []store.SampleRow{
			{VMID: "a", At: now.Add(-30 * time.Second), Source: "agent", CPU: f(10)},
			{VMID: "a", At: now.Add(-10 * time.Second), Source: "host", CPU: f(20)},
			{VMID: "a", At: now.Add(-20 * time.Second), Source: "agent", CPU: f(15)},
			{VMID: "b", At: now.Add(-5 * time.Second), Source: "agent", CPU: f(90)},
			{VMID: "old", At: now.Add(-time.Hour), Source: "agent", CPU: f(70)},
		}
		for i := 0; i < 600; i++ { // past one IN list
			rows = append(rows, store.SampleRow{VMID: fmt.Sprintf("many%03d", i), At: now.Add(-time.Second), Source: "agent", CPU: f(float64(i))})
		}
		if err := db.InsertSamples(ctx, rows); err != nil {
			t.Fatal(err)
		}
		ids := []string{"a", "b", "old", "none"}
		for i := 0; i < 600; i++ {
			ids = append(ids, fmt.Sprintf("many%03d", i))
		}
		latest, err := db.LatestSamples(ctx, ids, now.Add(-time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if len(latest) != 602 || *latest["a"].CPU != 20 || latest["a"].Source != "host" || *latest["b"].CPU != 90 || *latest["many599"].CPU != 599 {
			t.Errorf("latest: %d VMs, a %+v, b %+v", len(latest), latest["a"], latest["b"])
		}
		if _, ok := latest["old"]; ok {
			t.Error("a VM whose samples are all older is in the answer")
		}
		all, err := db.SamplesOf(ctx, []string{"a", "b", "old"}, now.Add(-time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if got := all["a"]; len(got) != 3 || *got[0].CPU != 10 || *got[1].CPU != 15 || *got[2].CPU != 20 || len(all["b"]) != 1 || len(all["old"]) != 0 {
			t.Errorf("samples of a: %+v; b: %d, old: %d", got, len(all["b"]), len(all["old"]))
		}
	})
}

// TestSamplesRoundTrip: every column of a sample comes back as written, nil as nil, on
// both dialects (PostgreSQL's are written with COPY, SQLite's with an INSERT).
func TestSamplesRoundTrip(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		at := time.Now().UTC().Truncate(time.Microsecond)
		rss := int64(123456789)
		full := store.SampleRow{VMID: "full", At: at, Source: "agent", CPU: f(1.5), Mem: f(2.5), HostRSS: &rss,
			NetRx: f(3.5), NetTx: f(4.5), DiskRead: f(5.5), DiskWrite: f(6.5), ProgWrite: f(7.5), PageIn: f(8.5)}
		bare := store.SampleRow{VMID: "bare", At: at.Add(time.Microsecond), Source: "host"}
		if err := db.InsertSamples(ctx, []store.SampleRow{full, bare}); err != nil {
			t.Fatal(err)
		}
		for _, want := range []store.SampleRow{full, bare} {
			got, err := db.Samples(ctx, want.VMID, at.Add(-time.Second))
			if err != nil || len(got) != 1 {
				t.Fatalf("%s: %v %v", want.VMID, got, err)
			}
			if g, w := fmt.Sprint(show(got[0])), fmt.Sprint(show(want)); g != w {
				t.Errorf("%s read back\n %s\nwant\n %s", want.VMID, g, w)
			}
		}
	})
}

// show spells a sample out with its pointers followed.
func show(r store.SampleRow) []any {
	out := []any{r.VMID, r.At.UTC().Format(time.RFC3339Nano), r.Source}
	for _, p := range []*float64{r.CPU, r.Mem, r.NetRx, r.NetTx, r.DiskRead, r.DiskWrite, r.ProgWrite, r.PageIn} {
		if p == nil {
			out = append(out, "nil")
		} else {
			out = append(out, *p)
		}
	}
	if r.HostRSS == nil {
		return append(out, "nil")
	}
	return append(out, *r.HostRSS)
}
