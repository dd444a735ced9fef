// Package metrics collects what each running VM is doing: from its guest agent first, from
// the hypervisor process on the host when no agent answers, and always the hypervisor's
// network and disk counters as rates. It keeps the last hour per VM for charts and exports
// everything to Prometheus.
package metrics

import (
	"math"
	"sync"
	"time"
)

// Sources of a sample.
const (
	FromAgent = "agent" // the guest agent answered
	FromHost  = "host"  // no agent: the hypervisor process seen from the host
	// FromPaused: the VM is paused; its agent is not asked (it cannot answer), the
	// hypervisor process is seen from the host (its CPU is ~0).
	FromPaused = "paused"
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

	run runID // the hypervisor process it was taken of: a sample of an earlier run is not current
}

// point is a Sample as history keeps it: 64 bytes instead of a Sample's ~230 (its pointers
// and their floats), so that 10,000 VMs' last quarter hour fits in ~120 MiB. A chart
// loses nothing to float32's seven digits.
type point struct {
	at  int64 // Unix nanoseconds
	v   [nFields]float32
	src uint8
}

// The fields of a point; NaN is "no value".
const (
	fCPU = iota
	fMem
	fRSS
	fNetRx
	fNetTx
	fDiskRead
	fDiskWrite
	fProgWrite
	fWriteback
	fPageIn
	fMajorFaults
	nFields
)

var sources = [...]string{"", FromAgent, FromHost, FromPaused}

func pack(s Sample) point {
	p := point{at: s.Time.UnixNano()}
	for i, f := range s.fields() {
		if f == nil {
			p.v[i] = float32(math.NaN())
		} else {
			p.v[i] = float32(*f)
		}
	}
	if s.HostRSSBytes > 0 {
		p.v[fRSS] = float32(s.HostRSSBytes)
	}
	for i, n := range sources {
		if n == s.Source {
			p.src = uint8(i)
		}
	}
	return p
}

func (p point) unpack() Sample {
	s := Sample{Time: time.Unix(0, p.at).UTC(), Source: sources[p.src]}
	vals := make([]float64, 0, nFields) // one allocation for every value of the sample
	for i, dst := range s.fieldPtrs() {
		if f := p.v[i]; !math.IsNaN(float64(f)) {
			vals = append(vals, float64(f))
			*dst = &vals[len(vals)-1]
		}
	}
	if r := p.v[fRSS]; !math.IsNaN(float64(r)) {
		s.HostRSSBytes = uint64(r)
	}
	return s
}

// fields are the sample's values in point order (fRSS is nil here: it is not a pointer).
func (s *Sample) fields() [nFields]*float64 {
	return [nFields]*float64{fCPU: s.CPUPercent, fMem: s.MemPercent, fNetRx: s.NetRxBps, fNetTx: s.NetTxBps,
		fDiskRead: s.DiskReadBps, fDiskWrite: s.DiskWriteBps, fProgWrite: s.ProgWriteBps, fWriteback: s.WritebackBps,
		fPageIn: s.PageInBps, fMajorFaults: s.MajorFaultsPS}
}

func (s *Sample) fieldPtrs() [nFields]**float64 {
	var rss *float64 // fRSS has no pointer field: written to a throwaway
	return [nFields]**float64{fCPU: &s.CPUPercent, fMem: &s.MemPercent, fRSS: &rss, fNetRx: &s.NetRxBps, fNetTx: &s.NetTxBps,
		fDiskRead: &s.DiskReadBps, fDiskWrite: &s.DiskWriteBps, fProgWrite: &s.ProgWriteBps, fWriteback: &s.WritebackBps,
		fPageIn: &s.PageInBps, fMajorFaults: &s.MajorFaultsPS}
}

// ring keeps the newest samples of one VM, oldest first, up to limit. It grows with the
// samples taken (a VM polled for a minute holds a minute), never beyond limit.
type ring struct {
	mu     sync.RWMutex
	latest Sample // the newest sample with every value, for the current figures
	has    bool
	buf    []point
	limit  int
	start  int // index of the oldest once buf is full
}

func newRing(limit int) *ring { return &ring{limit: limit} }

func (r *ring) add(s Sample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.latest, r.has = s, true
	p := pack(s)
	if len(r.buf) < r.limit {
		if len(r.buf) == cap(r.buf) { // grow by half, at least 16, never past limit
			n := min(r.limit, max(16, cap(r.buf)*3/2))
			r.buf = append(make([]point, 0, n), r.buf...)
		}
		r.buf = append(r.buf, p)
		return
	}
	r.buf[r.start] = p
	r.start = (r.start + 1) % len(r.buf)
}

// since returns the samples at or after t, oldest first.
func (r *ring) since(t time.Time) []Sample {
	r.mu.RLock()
	defer r.mu.RUnlock()
	from := t.UnixNano()
	out := make([]Sample, 0, len(r.buf))
	for k := range r.buf {
		if p := r.buf[(r.start+k)%len(r.buf)]; p.at >= from {
			out = append(out, p.unpack())
		}
	}
	return out
}

// newest is the latest sample added, with full precision.
func (r *ring) newest() (Sample, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.latest, r.has
}

// size is how many samples the ring holds and has room for.
func (r *ring) size() (n, capacity int) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.buf), cap(r.buf)
}
