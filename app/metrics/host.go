package metrics

import (
	"fmt"
	"time"

	"github.com/prometheus/procfs"
)

// userHZ is the kernel's clock tick for /proc/<pid>/stat times; 100 on every Linux port
// Hearth runs on.
const userHZ = 100

// hostReading is the hypervisor process's CPU time and resident memory at one moment.
type hostReading struct {
	at      time.Time
	cpuSecs float64
	rss     uint64
}

func readHost(fs procfs.FS, pid int, now time.Time) (hostReading, error) {
	p, err := fs.Proc(pid)
	if err != nil {
		return hostReading{}, fmt.Errorf("hypervisor process %d: %w", pid, err)
	}
	st, err := p.Stat()
	if err != nil {
		return hostReading{}, fmt.Errorf("hypervisor process %d stat: %w", pid, err)
	}
	return hostReading{at: now, cpuSecs: float64(st.UTime+st.STime) / userHZ, rss: uint64(st.ResidentMemory())}, nil
}

// hostCPU is the process's CPU use between two readings as a share of the VM's vCPUs:
// 100 % means all vCPUs busy (a hypervisor's own threads can push it slightly past that;
// it is clamped).
func hostCPU(prev, cur hostReading, vcpus int) (float64, bool) {
	dt := cur.at.Sub(prev.at).Seconds()
	d := cur.cpuSecs - prev.cpuSecs
	if dt <= 0 || d < 0 || vcpus <= 0 {
		return 0, false
	}
	v := 100 * d / dt / float64(vcpus)
	if v > 100 {
		v = 100
	}
	return v, true
}
