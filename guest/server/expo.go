package server

import (
	"bytes"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"hearth/guest/api"
)

// The agent writes the Prometheus text exposition format (version 0.0.4) itself: the
// series are a small fixed set, and client_golang's registry made the agent's binary a
// quarter bigger and each scrape allocate several times more (see make bench-agent). The
// tests parse this output with the Prometheus parser (expfmt) to keep it honest.
//
// Conventions: base units in names (bytes, seconds), _total on counters, ratios in 0..1.
// Counters are the kernel's own cumulative values, so rates are Prometheus's business.

// promContentType is what Prometheus expects for the text format.
const promContentType = "text/plain; version=0.0.4; charset=utf-8"

var bufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

type expo struct {
	b *bytes.Buffer
}

// family writes the HELP and TYPE lines.
func (e expo) family(name, typ, help string) {
	e.b.WriteString("# HELP ")
	e.b.WriteString(name)
	e.b.WriteByte(' ')
	e.b.WriteString(help)
	e.b.WriteString("\n# TYPE ")
	e.b.WriteString(name)
	e.b.WriteByte(' ')
	e.b.WriteString(typ)
	e.b.WriteByte('\n')
}

// sample writes one line; labels alternate name, value.
func (e expo) sample(name string, v float64, labels ...string) {
	e.b.WriteString(name)
	if len(labels) > 0 {
		e.b.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				e.b.WriteByte(',')
			}
			e.b.WriteString(labels[i])
			e.b.WriteString(`="`)
			writeLabelValue(e.b, labels[i+1])
			e.b.WriteByte('"')
		}
		e.b.WriteByte('}')
	}
	e.b.WriteByte(' ')
	writeFloat(e.b, v)
	e.b.WriteByte('\n')
}

// one writes a family with a single unlabelled sample.
func (e expo) one(name, typ, help string, v float64) {
	e.family(name, typ, help)
	e.sample(name, v)
}

// writeLabelValue escapes \, " and newline, and replaces invalid UTF-8 (an interface or
// mount name from the guest can hold any bytes) so the output always parses.
func writeLabelValue(b *bytes.Buffer, s string) {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\"`)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteByte(c)
		}
	}
}

func writeFloat(b *bytes.Buffer, v float64) {
	switch {
	case math.IsInf(v, 1):
		b.WriteString("+Inf")
	case math.IsInf(v, -1):
		b.WriteString("-Inf")
	case math.IsNaN(v):
		b.WriteString("NaN")
	default:
		b.Write(strconv.AppendFloat(b.AvailableBuffer(), v, 'g', -1, 64))
	}
}

type modeValue struct {
	mode string
	v    *float64
}

// writeExposition renders a snapshot.
func writeExposition(b *bytes.Buffer, s *api.Snapshot, version string) {
	e := expo{b}
	e.family("hearth_agent_info", "gauge", "The agent's version and the guest's hostname.")
	e.sample("hearth_agent_info", 1, "hostname", s.Hostname, "version", version)
	e.one("hearth_agent_sample_timestamp_seconds", "gauge", "When the served sample was taken.", float64(s.Time.UnixNano())/1e9)

	if s.CPUUsagePercent != nil {
		e.one("hearth_guest_cpu_usage_ratio", "gauge", "Share of CPU time busy over the last sample interval (iowait counts as idle).", *s.CPUUsagePercent/100)
		e.family("hearth_guest_cpu_mode_ratio", "gauge", "Share of CPU time per mode over the last sample interval.")
		c := s.CPU
		for _, m := range []modeValue{{"idle", c.IdlePercent}, {"iowait", c.IowaitPercent}, {"irq", c.IRQPercent},
			{"nice", c.NicePercent}, {"softirq", c.SoftIRQPercent}, {"steal", c.StealPercent}, {"system", c.SystemPercent}, {"user", c.UserPercent}} {
			if m.v != nil {
				e.sample("hearth_guest_cpu_mode_ratio", *m.v/100, "mode", m.mode)
			}
		}
	}
	t := s.CPUSeconds
	e.family("hearth_guest_cpu_seconds_total", "counter", "CPU time spent per mode, all CPUs, since boot.")
	for _, m := range []struct {
		mode string
		v    float64
	}{{"idle", t.Idle}, {"iowait", t.Iowait}, {"irq", t.IRQ}, {"nice", t.Nice}, {"softirq", t.SoftIRQ},
		{"steal", t.Steal}, {"system", t.System}, {"user", t.User}} {
		e.sample("hearth_guest_cpu_seconds_total", m.v, "mode", m.mode)
	}
	e.one("hearth_guest_cpus", "gauge", "Number of CPUs.", float64(s.CPU.Count))
	e.family("hearth_guest_load", "gauge", "Load average.")
	e.sample("hearth_guest_load", s.Load.Load1, "window", "1m")
	e.sample("hearth_guest_load", s.Load.Load5, "window", "5m")
	e.sample("hearth_guest_load", s.Load.Load15, "window", "15m")
	e.one("hearth_guest_uptime_seconds", "gauge", "Seconds since the guest booted.", s.UptimeSeconds)
	e.family("hearth_guest_processes", "gauge", "Processes: running and blocked (from /proc/stat), and all.")
	e.sample("hearth_guest_processes", float64(s.Processes.Total), "state", "all")
	e.sample("hearth_guest_processes", float64(s.Processes.Blocked), "state", "blocked")
	e.sample("hearth_guest_processes", float64(s.Processes.Running), "state", "running")

	if s.MemUsagePercent != nil {
		m := s.Memory
		e.one("hearth_guest_memory_total_bytes", "gauge", "MemTotal.", float64(m.TotalBytes))
		e.one("hearth_guest_memory_available_bytes", "gauge", "MemAvailable (MemFree on kernels without it).", float64(m.AvailableBytes))
		e.one("hearth_guest_memory_used_bytes", "gauge", "MemTotal minus MemAvailable.", float64(m.UsedBytes))
		e.one("hearth_guest_memory_usage_ratio", "gauge", "Used memory as a share of MemTotal.", *s.MemUsagePercent/100)
		e.one("hearth_guest_swap_total_bytes", "gauge", "SwapTotal.", float64(s.Swap.TotalBytes))
		e.one("hearth_guest_swap_free_bytes", "gauge", "SwapFree.", float64(s.Swap.FreeBytes))
	}

	net := s.Network
	for _, f := range []struct {
		name, help string
		v          func(api.NetIface) uint64
	}{
		{"hearth_guest_network_receive_bytes_total", "Bytes received.", func(n api.NetIface) uint64 { return n.RxBytes }},
		{"hearth_guest_network_transmit_bytes_total", "Bytes sent.", func(n api.NetIface) uint64 { return n.TxBytes }},
		{"hearth_guest_network_receive_packets_total", "Packets received.", func(n api.NetIface) uint64 { return n.RxPackets }},
		{"hearth_guest_network_transmit_packets_total", "Packets sent.", func(n api.NetIface) uint64 { return n.TxPackets }},
		{"hearth_guest_network_receive_errors_total", "Receive errors.", func(n api.NetIface) uint64 { return n.RxErrors }},
		{"hearth_guest_network_transmit_errors_total", "Transmit errors.", func(n api.NetIface) uint64 { return n.TxErrors }},
	} {
		if len(net) == 0 {
			break
		}
		e.family(f.name, "counter", f.help)
		for _, n := range net {
			e.sample(f.name, float64(f.v(n)), "interface", n.Interface)
		}
	}
	for _, f := range []struct {
		name, help string
		v          func(api.Disk) uint64
	}{
		{"hearth_guest_disk_read_bytes_total", "Bytes read from the disk.", func(d api.Disk) uint64 { return d.ReadBytes }},
		{"hearth_guest_disk_written_bytes_total", "Bytes written to the disk.", func(d api.Disk) uint64 { return d.WrittenBytes }},
		{"hearth_guest_disk_reads_completed_total", "Reads completed.", func(d api.Disk) uint64 { return d.Reads }},
		{"hearth_guest_disk_writes_completed_total", "Writes completed.", func(d api.Disk) uint64 { return d.Writes }},
	} {
		if len(s.Disks) == 0 {
			break
		}
		e.family(f.name, "counter", f.help)
		for _, d := range s.Disks {
			e.sample(f.name, float64(f.v(d)), "device", d.Device)
		}
	}
	if pc := s.PageCache; pc != nil {
		e.one("hearth_guest_page_cache_dirtied_bytes_total", "counter", "Bytes programs wrote into the page cache (nr_dirtied × page size).", float64(pc.DirtiedBytes))
		e.one("hearth_guest_page_cache_written_back_bytes_total", "counter", "Bytes written back from the page cache to disks (nr_written × page size).", float64(pc.WrittenBackBytes))
		e.one("hearth_guest_paged_in_bytes_total", "counter", "Bytes read from block devices (pgpgin).", float64(pc.PagedInBytes))
		e.one("hearth_guest_paged_out_bytes_total", "counter", "Bytes written to block devices (pgpgout).", float64(pc.PagedOutBytes))
		e.one("hearth_guest_major_faults_total", "counter", "Page faults that needed a disk read (pgmajfault).", float64(pc.MajorFaults))
	}
	// Two filesystems on one mountpoint (an overmount) would be duplicate series: keep the
	// first of each mountpoint.
	fss := make([]api.Filesystem, 0, len(s.Filesystems))
	seen := map[string]bool{}
	for _, f := range s.Filesystems {
		if !seen[f.Mountpoint] {
			seen[f.Mountpoint] = true
			fss = append(fss, f)
		}
	}
	sort.Slice(fss, func(i, j int) bool { return fss[i].Mountpoint < fss[j].Mountpoint })
	for _, f := range []struct {
		name, help string
		v          func(api.Filesystem) uint64
	}{
		{"hearth_guest_filesystem_size_bytes", "Filesystem size.", func(f api.Filesystem) uint64 { return f.SizeBytes }},
		{"hearth_guest_filesystem_used_bytes", "Filesystem space used.", func(f api.Filesystem) uint64 { return f.UsedBytes }},
		{"hearth_guest_filesystem_avail_bytes", "Filesystem space available to unprivileged users.", func(f api.Filesystem) uint64 { return f.AvailBytes }},
	} {
		if len(fss) == 0 {
			break
		}
		e.family(f.name, "gauge", f.help)
		for _, fs := range fss {
			e.sample(f.name, float64(f.v(fs)), "device", fs.Device, "fstype", fs.FSType, "mountpoint", fs.Mountpoint)
		}
	}
}
