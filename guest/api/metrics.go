package api

import "time"

// SummaryView is GET /metrics?view=summary: the part of a Snapshot the manager polls for
// (its figures, the sample's time, the page-cache counters, the filesystems), with the
// same JSON names. An agent from before the view answers the whole Snapshot, which the
// manager reads the same way.
type SummaryView struct {
	AgentVersion    string       `json:"agent_version"`
	Time            time.Time    `json:"time"`
	CPUUsagePercent *float64     `json:"cpu_usage_percent"`
	MemUsagePercent *float64     `json:"memory_usage_percent"`
	PageCache       *PageCache   `json:"page_cache"`
	Filesystems     []Filesystem `json:"filesystems"`
}

// ViewSummary is the view query value for SummaryView.
const ViewSummary = "summary"

// Summary is the snapshot's SummaryView.
func (s *Snapshot) Summary() SummaryView {
	return SummaryView{AgentVersion: s.AgentVersion, Time: s.Time, CPUUsagePercent: s.CPUUsagePercent, MemUsagePercent: s.MemUsagePercent,
		PageCache: s.PageCache, Filesystems: s.Filesystems}
}

// Snapshot is one sample of the guest, as served by the agent at GET /metrics.
// The JSON names are a wire contract: cpu_usage_percent and memory_usage_percent are the
// seed document's fields; the rest only grows.
type Snapshot struct {
	AgentVersion    string       `json:"agent_version"`
	Hostname        string       `json:"hostname"`
	Time            time.Time    `json:"time"`
	IntervalSeconds float64      `json:"interval_seconds"`
	UptimeSeconds   float64      `json:"uptime_seconds"`
	CPUUsagePercent *float64     `json:"cpu_usage_percent"` // null until two readings exist
	MemUsagePercent *float64     `json:"memory_usage_percent"`
	CPU             CPU          `json:"cpu"`
	Load            Load         `json:"load"`
	Processes       Processes    `json:"processes"`
	Memory          Memory       `json:"memory"`
	Swap            Swap         `json:"swap"`
	Network         []NetIface   `json:"network"`
	Disks           []Disk       `json:"disks"`
	PageCache       *PageCache   `json:"page_cache"` // null where /proc/vmstat lacks the counters
	Filesystems     []Filesystem `json:"filesystems"`
	Interfaces      []Interface  `json:"interfaces"`
	Errors          []string     `json:"errors,omitempty"`
	CPUSeconds      CPUTimes     `json:"cpu_seconds_total"`
}

// CPU is the share of CPU time per mode over the last interval, in percent of all CPUs.
type CPU struct {
	Count          int      `json:"count"`
	UsagePercent   *float64 `json:"usage_percent"`
	UserPercent    *float64 `json:"user_percent"`
	NicePercent    *float64 `json:"nice_percent"`
	SystemPercent  *float64 `json:"system_percent"`
	IdlePercent    *float64 `json:"idle_percent"`
	IowaitPercent  *float64 `json:"iowait_percent"`
	IRQPercent     *float64 `json:"irq_percent"`
	SoftIRQPercent *float64 `json:"softirq_percent"`
	StealPercent   *float64 `json:"steal_percent"`
}

// CPUTimes are the cumulative seconds of all CPUs per mode, from /proc/stat. Guest time is
// already inside User and Nice, so it is not listed separately.
type CPUTimes struct {
	User    float64 `json:"user"`
	Nice    float64 `json:"nice"`
	System  float64 `json:"system"`
	Idle    float64 `json:"idle"`
	Iowait  float64 `json:"iowait"`
	IRQ     float64 `json:"irq"`
	SoftIRQ float64 `json:"softirq"`
	Steal   float64 `json:"steal"`
}

// Load is the load average.
type Load struct {
	Load1  float64 `json:"load1"`
	Load5  float64 `json:"load5"`
	Load15 float64 `json:"load15"`
}

// Processes counts processes: running and blocked from /proc/stat, total from /proc.
type Processes struct {
	Running uint64 `json:"running"`
	Blocked uint64 `json:"blocked"`
	Total   uint64 `json:"total"`
}

// Memory is from /proc/meminfo. Used = Total − Available; where the kernel has no
// MemAvailable (before 3.14), Available falls back to MemFree and AvailableEstimated says so.
type Memory struct {
	TotalBytes         uint64 `json:"total_bytes"`
	AvailableBytes     uint64 `json:"available_bytes"`
	UsedBytes          uint64 `json:"used_bytes"`
	FreeBytes          uint64 `json:"free_bytes"`
	BuffersBytes       uint64 `json:"buffers_bytes"`
	CachedBytes        uint64 `json:"cached_bytes"`
	AvailableEstimated bool   `json:"available_estimated"`
}

// Swap is from /proc/meminfo.
type Swap struct {
	TotalBytes uint64 `json:"total_bytes"`
	FreeBytes  uint64 `json:"free_bytes"`
	UsedBytes  uint64 `json:"used_bytes"`
}

// NetIface is one interface's cumulative counters from /proc/net/dev (lo excluded).
type NetIface struct {
	Interface string `json:"interface"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxBytes   uint64 `json:"tx_bytes"`
	RxPackets uint64 `json:"rx_packets"`
	TxPackets uint64 `json:"tx_packets"`
	RxErrors  uint64 `json:"rx_errors"`
	TxErrors  uint64 `json:"tx_errors"`
	RxDropped uint64 `json:"rx_dropped"`
	TxDropped uint64 `json:"tx_dropped"`
}

// Disk is one whole disk's cumulative counters from /proc/diskstats (partitions, loop and
// ram devices excluded).
type Disk struct {
	Device       string `json:"device"`
	ReadBytes    uint64 `json:"read_bytes"`
	WrittenBytes uint64 `json:"written_bytes"`
	Reads        uint64 `json:"reads"`
	Writes       uint64 `json:"writes"`
}

// PageCache is the guest's cumulative I/O through memory, from /proc/vmstat. What programs
// write lands in the page cache first (DirtiedBytes) and reaches a disk later, if ever
// (WrittenBackBytes): a file written and deleted within seconds is never written back.
// Reads served from the cache are counted nowhere by the kernel; PagedInBytes and
// MajorFaults are the reads that had to go to a disk.
type PageCache struct {
	DirtiedBytes     uint64 `json:"dirtied_bytes"`      // nr_dirtied × page size: written into the page cache
	WrittenBackBytes uint64 `json:"written_back_bytes"` // nr_written × page size: written back to disks
	PagedInBytes     uint64 `json:"paged_in_bytes"`     // pgpgin × 1 KiB: read from block devices
	PagedOutBytes    uint64 `json:"paged_out_bytes"`    // pgpgout × 1 KiB: written to block devices
	MajorFaults      uint64 `json:"major_faults"`       // pgmajfault: page faults that needed a disk read
}

// Filesystem is one real mounted filesystem's size and use.
type Filesystem struct {
	Mountpoint string `json:"mountpoint"`
	Device     string `json:"device"`
	FSType     string `json:"fstype"`
	SizeBytes  uint64 `json:"size_bytes"`
	UsedBytes  uint64 `json:"used_bytes"`
	AvailBytes uint64 `json:"avail_bytes"`
}

// Interface is a network interface with its hardware and IP addresses.
type Interface struct {
	Name      string   `json:"name"`
	MAC       string   `json:"mac"`
	Up        bool     `json:"up"`
	Addresses []string `json:"addresses"` // CIDR form, e.g. 10.0.0.5/24
}
