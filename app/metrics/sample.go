// Package metrics collects what each running VM is doing: from its guest agent first, from
// the hypervisor process on the host when no agent answers, and always the hypervisor's
// network and disk counters as rates. It keeps the last hour per VM for charts and exports
// everything to Prometheus.
package metrics

import (
	"sync"
	"time"
)

// Sources of a sample.
const (
	FromAgent = "agent" // the guest agent answered
	FromHost  = "host"  // no agent: the hypervisor process seen from the host
)

// Sample is one poll of one VM. Pointers are nil where that source has no value.
type Sample struct {
	Time         time.Time `json:"time"`
	Source       string    `json:"source"`
	CPUPercent   *float64  `json:"cpu_usage_percent"`
	MemPercent   *float64  `json:"memory_usage_percent"` // guest memory: agent only
	HostRSSBytes uint64    `json:"host_rss_bytes,omitempty"`
	NetRxBps     *float64  `json:"net_rx_bytes_per_second"`
	NetTxBps     *float64  `json:"net_tx_bytes_per_second"`
	DiskReadBps  *float64  `json:"disk_read_bytes_per_second"`
	DiskWriteBps *float64  `json:"disk_write_bytes_per_second"`
	// What the guest's programs did, from its page-cache counters (agent only): bytes
	// written into the page cache, written back to disks, read from disks, and page
	// faults that needed a disk, per second.
	ProgWriteBps  *float64 `json:"disk_write_by_programs_bytes_per_second"`
	WritebackBps  *float64 `json:"disk_writeback_bytes_per_second"`
	PageInBps     *float64 `json:"disk_page_in_bytes_per_second"`
	MajorFaultsPS *float64 `json:"major_faults_per_second"`
	AgentVersion  string   `json:"agent_version,omitempty"`

	run string // the hypervisor process it was taken of: a sample of an earlier run is not current
}

// ring keeps the newest samples of one VM, oldest first, up to its capacity.
type ring struct {
	mu    sync.RWMutex
	buf   []Sample
	start int
	n     int
}

func newRing(capacity int) *ring { return &ring{buf: make([]Sample, capacity)} }

func (r *ring) add(s Sample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := (r.start + r.n) % len(r.buf)
	r.buf[i] = s
	if r.n < len(r.buf) {
		r.n++
	} else {
		r.start = (r.start + 1) % len(r.buf)
	}
}

// since returns the samples at or after t, oldest first.
func (r *ring) since(t time.Time) []Sample {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Sample, 0, r.n)
	for k := 0; k < r.n; k++ {
		s := r.buf[(r.start+k)%len(r.buf)]
		if !s.Time.Before(t) {
			out = append(out, s)
		}
	}
	return out
}

func (r *ring) latest() (Sample, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.n == 0 {
		return Sample{}, false
	}
	return r.buf[(r.start+r.n-1)%len(r.buf)], true
}
