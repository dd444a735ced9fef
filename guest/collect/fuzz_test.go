package collect

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"hearth/guest/api"
)

// FuzzProcFiles writes arbitrary contents into /proc/stat, meminfo, loadavg, net/dev and
// diskstats of a scratch root and takes two readings: the agent must never panic, and any
// percentage it reports must be a real number in [0, 100].
func FuzzProcFiles(f *testing.F) {
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join("testdata/kernel-2.6.32-old/proc", name))
		return string(b)
	}
	f.Add(read("stat"), read("meminfo"), read("loadavg"), read("net/dev"), read("diskstats"))
	f.Add("cpu  1 2 3\n", "MemTotal: 0 kB\n", "nan nan nan", "x:", "8 0 sda NaN")
	f.Add("cpu  -1 -2 -3 -4 -5 -6 -7 -8 -9 -10\nbtime 99999999999999999999\n", "MemTotal: 10 kB\nMemAvailable: 20 kB\n", "1 2", "", "")
	f.Fuzz(func(t *testing.T, stat, meminfo, loadavg, netdev, diskstats string) {
		root := t.TempDir()
		proc := filepath.Join(root, "proc")
		os.MkdirAll(filepath.Join(proc, "net"), 0o755)
		os.MkdirAll(filepath.Join(root, "sys"), 0o755)
		for name, body := range map[string]string{"stat": stat, "meminfo": meminfo, "loadavg": loadavg, "net/dev": netdev, "diskstats": diskstats} {
			os.WriteFile(filepath.Join(proc, name), []byte(body), 0o644)
		}
		r := &Reader{ProcRoot: proc, SysRoot: filepath.Join(root, "sys"),
			Interfaces: func() ([]api.Interface, error) { return nil, nil }, Now: func() time.Time { return time.Unix(1e9, 0) }}
		s := NewSampler(r, time.Second, "fuzz")
		s.Sample()
		snap := s.Sample()
		for name, p := range map[string]*float64{"cpu": snap.CPUUsagePercent, "memory": snap.MemUsagePercent, "user": snap.CPU.UserPercent} {
			if p != nil && (*p != *p || *p < 0 || *p > 100) {
				t.Fatalf("%s%% = %v", name, *p)
			}
		}
	})
}
