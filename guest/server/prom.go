package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"hearth/guest/collect"
)

// promCollector exposes the latest snapshot in Prometheus form. It follows the naming
// conventions: base units in names (bytes, seconds), _total on counters, ratios in 0..1.
// Counters are the kernel's own cumulative values, so rates are computed by Prometheus.
type promCollector struct {
	sampler *collect.Sampler
	version string
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("hearth_guest_"+name, help, labels, nil)
}

var (
	dInfo        = prometheus.NewDesc("hearth_agent_info", "The agent's version and the guest's hostname.", []string{"version", "hostname"}, nil)
	dSampleTime  = prometheus.NewDesc("hearth_agent_sample_timestamp_seconds", "When the served sample was taken.", nil, nil)
	dCPUUsage    = desc("cpu_usage_ratio", "Share of CPU time busy over the last sample interval (iowait counts as idle).")
	dCPUMode     = desc("cpu_mode_ratio", "Share of CPU time per mode over the last sample interval.", "mode")
	dCPUSeconds  = desc("cpu_seconds_total", "CPU time spent per mode, all CPUs, since boot.", "mode")
	dCPUs        = desc("cpus", "Number of CPUs.")
	dLoad        = desc("load", "Load average.", "window")
	dUptime      = desc("uptime_seconds", "Seconds since the guest booted.")
	dProcs       = desc("processes", "Processes by state (running and blocked from /proc/stat; all).", "state")
	dMemTotal    = desc("memory_total_bytes", "MemTotal.")
	dMemAvail    = desc("memory_available_bytes", "MemAvailable (MemFree on kernels without it).")
	dMemUsed     = desc("memory_used_bytes", "MemTotal minus MemAvailable.")
	dMemUsage    = desc("memory_usage_ratio", "Used memory as a share of MemTotal.")
	dSwapTotal   = desc("swap_total_bytes", "SwapTotal.")
	dSwapFree    = desc("swap_free_bytes", "SwapFree.")
	dNetRxBytes  = desc("network_receive_bytes_total", "Bytes received.", "interface")
	dNetTxBytes  = desc("network_transmit_bytes_total", "Bytes sent.", "interface")
	dNetRxPkts   = desc("network_receive_packets_total", "Packets received.", "interface")
	dNetTxPkts   = desc("network_transmit_packets_total", "Packets sent.", "interface")
	dNetRxErrs   = desc("network_receive_errors_total", "Receive errors.", "interface")
	dNetTxErrs   = desc("network_transmit_errors_total", "Transmit errors.", "interface")
	dDiskRead    = desc("disk_read_bytes_total", "Bytes read from the disk.", "device")
	dDiskWritten = desc("disk_written_bytes_total", "Bytes written to the disk.", "device")
	dDiskReads   = desc("disk_reads_completed_total", "Reads completed.", "device")
	dDiskWrites  = desc("disk_writes_completed_total", "Writes completed.", "device")
	dFSSize      = desc("filesystem_size_bytes", "Filesystem size.", "mountpoint", "device", "fstype")
	dFSUsed      = desc("filesystem_used_bytes", "Filesystem space used.", "mountpoint", "device", "fstype")
	dFSAvail     = desc("filesystem_avail_bytes", "Filesystem space available to unprivileged users.", "mountpoint", "device", "fstype")
)

var allDescs = []*prometheus.Desc{dInfo, dSampleTime, dCPUUsage, dCPUMode, dCPUSeconds, dCPUs, dLoad, dUptime, dProcs,
	dMemTotal, dMemAvail, dMemUsed, dMemUsage, dSwapTotal, dSwapFree, dNetRxBytes, dNetTxBytes, dNetRxPkts, dNetTxPkts,
	dNetRxErrs, dNetTxErrs, dDiskRead, dDiskWritten, dDiskReads, dDiskWrites, dFSSize, dFSUsed, dFSAvail}

func (c *promCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

func (c *promCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.sampler.Latest()
	if s == nil {
		return
	}
	// NewConstMetric, not Must…: a label from the guest (an interface or mount name) that is
	// not valid UTF-8 drops that one series instead of panicking the agent.
	emit := func(t prometheus.ValueType, d *prometheus.Desc, v float64, labels []string) {
		if m, err := prometheus.NewConstMetric(d, t, v, labels...); err == nil {
			ch <- m
		}
	}
	g := func(d *prometheus.Desc, v float64, labels ...string) { emit(prometheus.GaugeValue, d, v, labels) }
	cnt := func(d *prometheus.Desc, v float64, labels ...string) { emit(prometheus.CounterValue, d, v, labels) }
	g(dInfo, 1, c.version, s.Hostname)
	g(dSampleTime, float64(s.Time.UnixNano())/1e9)
	if s.CPUUsagePercent != nil {
		g(dCPUUsage, *s.CPUUsagePercent/100)
		for mode, p := range map[string]*float64{"user": s.CPU.UserPercent, "nice": s.CPU.NicePercent, "system": s.CPU.SystemPercent,
			"idle": s.CPU.IdlePercent, "iowait": s.CPU.IowaitPercent, "irq": s.CPU.IRQPercent, "softirq": s.CPU.SoftIRQPercent,
			"steal": s.CPU.StealPercent} {
			if p != nil {
				g(dCPUMode, *p/100, mode)
			}
		}
	}
	t := s.CPUSeconds
	for mode, v := range map[string]float64{"user": t.User, "nice": t.Nice, "system": t.System, "idle": t.Idle,
		"iowait": t.Iowait, "irq": t.IRQ, "softirq": t.SoftIRQ, "steal": t.Steal} {
		cnt(dCPUSeconds, v, mode)
	}
	g(dCPUs, float64(s.CPU.Count))
	g(dLoad, s.Load.Load1, "1m")
	g(dLoad, s.Load.Load5, "5m")
	g(dLoad, s.Load.Load15, "15m")
	g(dUptime, s.UptimeSeconds)
	g(dProcs, float64(s.Processes.Running), "running")
	g(dProcs, float64(s.Processes.Blocked), "blocked")
	g(dProcs, float64(s.Processes.Total), "all")
	if s.MemUsagePercent != nil {
		g(dMemTotal, float64(s.Memory.TotalBytes))
		g(dMemAvail, float64(s.Memory.AvailableBytes))
		g(dMemUsed, float64(s.Memory.UsedBytes))
		g(dMemUsage, *s.MemUsagePercent/100)
		g(dSwapTotal, float64(s.Swap.TotalBytes))
		g(dSwapFree, float64(s.Swap.FreeBytes))
	}
	for _, n := range s.Network {
		cnt(dNetRxBytes, float64(n.RxBytes), n.Interface)
		cnt(dNetTxBytes, float64(n.TxBytes), n.Interface)
		cnt(dNetRxPkts, float64(n.RxPackets), n.Interface)
		cnt(dNetTxPkts, float64(n.TxPackets), n.Interface)
		cnt(dNetRxErrs, float64(n.RxErrors), n.Interface)
		cnt(dNetTxErrs, float64(n.TxErrors), n.Interface)
	}
	for _, d := range s.Disks {
		cnt(dDiskRead, float64(d.ReadBytes), d.Device)
		cnt(dDiskWritten, float64(d.WrittenBytes), d.Device)
		cnt(dDiskReads, float64(d.Reads), d.Device)
		cnt(dDiskWrites, float64(d.Writes), d.Device)
	}
	for _, f := range s.Filesystems {
		g(dFSSize, float64(f.SizeBytes), f.Mountpoint, f.Device, f.FSType)
		g(dFSUsed, float64(f.UsedBytes), f.Mountpoint, f.Device, f.FSType)
		g(dFSAvail, float64(f.AvailBytes), f.Mountpoint, f.Device, f.FSType)
	}
}
