package collect

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hearth/guest/api"
)

// fixture copies testdata/name to a temp dir (so a test can swap files, as the kernel does
// between readings) and returns a Reader over it with fixed interfaces and statfs.
func fixture(t *testing.T, name string) (*Reader, string) {
	t.Helper()
	dst := t.TempDir()
	src := filepath.Join("testdata", name)
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
	r := &Reader{ProcRoot: filepath.Join(dst, "proc"), SysRoot: filepath.Join(dst, "sys"),
		Interfaces: func() ([]api.Interface, error) {
			return []api.Interface{{Name: "eth0", MAC: "02:00:00:00:00:01", Up: true, Addresses: []string{"10.0.0.5/24"}}}, nil
		},
		Statfs: func(string) (uint64, uint64, uint64, error) { return 1000, 400, 500, nil },
		Now:    func() time.Time { return time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC) },
	}
	return r, filepath.Join(dst, "proc")
}

func swap(t *testing.T, proc, from string) {
	t.Helper()
	if err := os.Rename(filepath.Join(proc, from), filepath.Join(proc, "stat")); err != nil {
		t.Fatal(err)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6 }

func pct(p *float64) string {
	if p == nil {
		return "null"
	}
	return fmt.Sprintf("%.4f", *p)
}

// TestCPUFromDeltas: between the two readings the fixture adds (in ticks) user +300,
// system +100, idle +500, iowait +50, softirq +30, steal +20, and guest +100 (already
// inside user). busy = 450, total = 1000, so CPU% is exactly 45.
func TestCPUFromDeltas(t *testing.T) {
	r, proc := fixture(t, "kernel-6.18-firecracker")
	s := NewSampler(r, 5*time.Second, "test")
	first := s.Sample()
	if first.CPUUsagePercent != nil {
		t.Fatalf("first reading has cpu%% %s; one read of /proc/stat cannot give a usage", pct(first.CPUUsagePercent))
	}
	swap(t, proc, "stat.after")
	got := s.Sample()
	want := map[string]struct {
		p *float64
		v float64
	}{
		"usage": {got.CPUUsagePercent, 45}, "user": {got.CPU.UserPercent, 30}, "nice": {got.CPU.NicePercent, 0},
		"system": {got.CPU.SystemPercent, 10}, "idle": {got.CPU.IdlePercent, 50}, "iowait": {got.CPU.IowaitPercent, 5},
		"irq": {got.CPU.IRQPercent, 0}, "softirq": {got.CPU.SoftIRQPercent, 3}, "steal": {got.CPU.StealPercent, 2},
	}
	for mode, w := range want {
		if w.p == nil || !near(*w.p, w.v) {
			t.Errorf("%s = %s, want %v", mode, pct(w.p), w.v)
		}
	}
	if got.CPU.Count != 2 {
		t.Errorf("cpu count = %d, want 2", got.CPU.Count)
	}
}

// TestCounterReset: when counters go backwards the reading becomes a new baseline, with no
// CPU figure, and the next reading measures from it.
func TestCounterReset(t *testing.T) {
	r, proc := fixture(t, "kernel-6.18-firecracker")
	s := NewSampler(r, 5*time.Second, "test")
	s.Sample()
	os.Rename(filepath.Join(proc, "stat"), filepath.Join(proc, "stat.orig"))
	swap(t, proc, "stat.reset")
	if got := s.Sample(); got.CPUUsagePercent != nil {
		t.Fatalf("after counters went backwards cpu%% = %s, want null (new baseline)", pct(got.CPUUsagePercent))
	}
	// From the halved counters back to the originals: a valid, positive interval.
	swap(t, proc, "stat.orig")
	got := s.Sample()
	if got.CPUUsagePercent == nil || *got.CPUUsagePercent <= 0 || *got.CPUUsagePercent > 100 {
		t.Errorf("after the new baseline cpu%% = %s, want a value in (0, 100]", pct(got.CPUUsagePercent))
	}
}

func TestMemoryUsesMemAvailable(t *testing.T) {
	r, _ := fixture(t, "kernel-6.18-firecracker")
	got := NewSampler(r, time.Second, "test").Sample()
	// MemTotal 24684092 kB, MemAvailable 24259952 kB (MemFree is far lower and must not count).
	if got.Memory.TotalBytes != 24684092*1024 || got.Memory.AvailableBytes != 24259952*1024 || got.Memory.UsedBytes != 424140*1024 {
		t.Errorf("memory = %+v", got.Memory)
	}
	if got.MemUsagePercent == nil || !near(*got.MemUsagePercent, 100*424140.0/24684092.0) || got.Memory.AvailableEstimated {
		t.Errorf("memory%% = %s (estimated %v), want %.6f", pct(got.MemUsagePercent), got.Memory.AvailableEstimated, 100*424140.0/24684092.0)
	}
	if len(got.Errors) != 0 {
		t.Errorf("errors on a complete /proc: %v", got.Errors)
	}
	if got.Hostname != "fixture-vm" || got.Processes.Running != 1 || got.Load != (api.Load{Load1: 0.76, Load5: 1.64, Load15: 1.14}) {
		t.Errorf("hostname %q running %d load %v", got.Hostname, got.Processes.Running, got.Load)
	}
}

func TestOldKernel(t *testing.T) {
	r, _ := fixture(t, "kernel-2.6.32-old")
	got := NewSampler(r, time.Second, "test").Sample()
	// No MemAvailable before Linux 3.14: MemFree stands in, and the snapshot says so.
	if !got.Memory.AvailableEstimated || got.Memory.UsedBytes != (1017876-200000)*1024 {
		t.Errorf("memory = %+v", got.Memory)
	}
	if got.MemUsagePercent == nil || !near(*got.MemUsagePercent, 100*817876.0/1017876.0) {
		t.Errorf("memory%% = %s", pct(got.MemUsagePercent))
	}
	if got.Swap.TotalBytes != 2096472*1024 || got.Swap.UsedBytes != 472*1024 {
		t.Errorf("swap = %+v", got.Swap)
	}
	if got.CPU.Count != 2 || got.CPUSeconds.User != 22.55 {
		t.Errorf("cpu count %d, user seconds %v", got.CPU.Count, got.CPUSeconds.User)
	}
	if len(got.Network) != 1 || got.Network[0] != (api.NetIface{Interface: "eth0", RxBytes: 9876543, TxBytes: 1234567,
		RxPackets: 12345, TxPackets: 6789, RxErrors: 1, TxErrors: 3, RxDropped: 2, TxDropped: 4}) {
		t.Errorf("network (lo must be left out) = %+v", got.Network)
	}
	// The whole disk only: its partition and loop devices would double-count.
	if len(got.Disks) != 1 || got.Disks[0] != (api.Disk{Device: "sda", ReadBytes: 400000 * 512, WrittenBytes: 240000 * 512, Reads: 5000, Writes: 3000}) {
		t.Errorf("disks = %+v", got.Disks)
	}
	if got.Load != (api.Load{Load1: 0.20, Load5: 0.18, Load15: 0.12}) {
		t.Errorf("load = %+v", got.Load)
	}
}

func TestContainerMissingFiles(t *testing.T) {
	r, _ := fixture(t, "container")
	got := NewSampler(r, time.Second, "test").Sample()
	if got.MemUsagePercent == nil || got.CPU.Count != 2 {
		t.Fatalf("memory and cpu must still be read: %+v", got)
	}
	joined := strings.Join(got.Errors, "\n")
	for _, part := range []string{"loadavg", "net/dev", "diskstats", "mountinfo"} {
		if !strings.Contains(joined, part) {
			t.Errorf("no error noted for missing %s: %v", part, got.Errors)
		}
	}
	if _, err := json.Marshal(got); err != nil {
		t.Errorf("snapshot does not encode: %v", err)
	}
}

func TestEmptyProc(t *testing.T) {
	r := &Reader{ProcRoot: t.TempDir(), SysRoot: t.TempDir(), Interfaces: func() ([]api.Interface, error) { return nil, nil }}
	got := NewSampler(r, time.Second, "test").Sample()
	if got.CPUUsagePercent != nil || got.MemUsagePercent != nil || len(got.Errors) < 4 {
		t.Errorf("empty /proc: %+v", got)
	}
	r.ProcRoot = "/nonexistent"
	if got := NewSampler(r, time.Second, "test").Sample(); len(got.Errors) == 0 {
		t.Error("missing /proc: no error noted")
	}
}

// TestManyCPUsAndInterfaces: a big guest is just more lines.
func TestManyCPUsAndInterfaces(t *testing.T) {
	r, proc := fixture(t, "kernel-2.6.32-old")
	var b strings.Builder
	b.WriteString("cpu  1000 0 1000 100000 0 0 0 0 0 0\n")
	for i := 0; i < 1024; i++ {
		fmt.Fprintf(&b, "cpu%d 1 0 1 100 0 0 0 0 0 0\n", i)
	}
	b.WriteString("btime 1062191376\nprocs_running 3\nprocs_blocked 1\n")
	os.WriteFile(filepath.Join(proc, "stat"), []byte(b.String()), 0o644)
	b.Reset()
	b.WriteString("Inter-|   Receive |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n")
	for i := 0; i < 5000; i++ {
		fmt.Fprintf(&b, "veth%d: 1 1 0 0 0 0 0 0 1 1 0 0 0 0 0 0\n", i)
	}
	os.WriteFile(filepath.Join(proc, "net/dev"), []byte(b.String()), 0o644)
	got := NewSampler(r, time.Second, "test").Sample()
	if got.CPU.Count != 1024 || len(got.Network) != 5000 || got.Processes.Blocked != 1 {
		t.Errorf("cpus %d, interfaces %d, blocked %d", got.CPU.Count, len(got.Network), got.Processes.Blocked)
	}
}

func TestFilesystemsAreRealOnes(t *testing.T) {
	r, proc := fixture(t, "kernel-6.18-firecracker")
	mountinfo := `22 27 0:21 / /proc rw,relatime - proc proc rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
28 27 254:0 /srv /srv rw,relatime - ext4 /dev/vda rw
29 27 254:16 / /data rw,relatime - xfs /dev/vdb rw
30 27 11:0 / /mnt/seed ro,relatime - iso9660 /dev/vdc ro
31 27 0:30 / /run rw - tmpfs tmpfs rw
`
	os.WriteFile(filepath.Join(proc, "self/mountinfo"), []byte(mountinfo), 0o644)
	got := NewSampler(r, time.Second, "test").Sample()
	var mps []string
	for _, f := range got.Filesystems {
		mps = append(mps, f.Mountpoint+"="+f.FSType)
	}
	// /srv is a bind mount of / (same device): counted once. The seed ISO, /run, /proc, /dev: no.
	if strings.Join(mps, " ") != "/=ext4 /data=xfs" {
		t.Errorf("filesystems = %v", mps)
	}
	if got.Filesystems[0].SizeBytes != 1000 || got.Filesystems[0].UsedBytes != 400 {
		t.Errorf("statfs figures not carried: %+v", got.Filesystems[0])
	}
}

func TestCPUSharesTable(t *testing.T) {
	base := api.CPUTimes{User: 10, System: 5, Idle: 100}
	for _, tt := range []struct {
		name string
		cur  api.CPUTimes
		ok   bool
		want float64
	}{
		{"no time passed", base, false, 0},
		{"all idle", api.CPUTimes{User: 10, System: 5, Idle: 110}, true, 0},
		{"all busy", api.CPUTimes{User: 20, System: 5, Idle: 100}, true, 100},
		{"iowait counts as idle", api.CPUTimes{User: 15, System: 5, Idle: 100, Iowait: 5}, true, 50},
		{"steal counts as busy", api.CPUTimes{User: 10, System: 5, Idle: 105, Steal: 5}, true, 50},
		{"idle went backwards", api.CPUTimes{User: 20, System: 5, Idle: 99}, false, 0},
	} {
		got, ok := cpuShares(base, tt.cur)
		if ok != tt.ok || ok && !near(*got.UsagePercent, tt.want) {
			t.Errorf("%s: ok=%v usage=%s, want ok=%v %v", tt.name, ok, pct(got.UsagePercent), tt.ok, tt.want)
		}
	}
}
