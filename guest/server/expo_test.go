package server

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"hearth/guest/api"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func f64(v float64) *float64 { return &v }

func sampleSnapshot() *api.Snapshot {
	return &api.Snapshot{
		Hostname: "web-1", Time: time.Unix(1795680719, 500e6), UptimeSeconds: 1234.5,
		CPUUsagePercent: f64(45), MemUsagePercent: f64(25),
		CPU: api.CPU{Count: 2, UsagePercent: f64(45), UserPercent: f64(30), SystemPercent: f64(10), IdlePercent: f64(50),
			IowaitPercent: f64(5), StealPercent: f64(2), SoftIRQPercent: f64(3), NicePercent: f64(0), IRQPercent: f64(0)},
		CPUSeconds: api.CPUTimes{User: 951.69, System: 134.12, Idle: 1371.81},
		Load:       api.Load{Load1: 0.5, Load5: 0.25, Load15: 0.125},
		Processes:  api.Processes{Running: 2, Blocked: 1, Total: 80},
		Memory:     api.Memory{TotalBytes: 4 << 30, AvailableBytes: 3 << 30, UsedBytes: 1 << 30},
		Swap:       api.Swap{TotalBytes: 1 << 30, FreeBytes: 1 << 29},
		Network:    []api.NetIface{{Interface: "eth0", RxBytes: 1000, TxBytes: 2000, RxPackets: 10, TxPackets: 20}},
		Disks:      []api.Disk{{Device: "vda", ReadBytes: 4096, WrittenBytes: 8192, Reads: 1, Writes: 2}},
		PageCache:  &api.PageCache{DirtiedBytes: 21 << 20, WrittenBackBytes: 16 << 10, PagedInBytes: 4096, PagedOutBytes: 16 << 10, MajorFaults: 7},
		Filesystems: []api.Filesystem{{Mountpoint: "/", Device: "/dev/vda", FSType: "ext4", SizeBytes: 10 << 30, UsedBytes: 4 << 30, AvailBytes: 5 << 30},
			{Mountpoint: "/", Device: "/dev/vdb", FSType: "xfs", SizeBytes: 1}},
	}
}

func parse(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("the Prometheus parser rejects our output: %v\n%s", err, text)
	}
	return fams
}

func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no family %s", name)
	}
	for _, m := range f.Metric {
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			match = match && found
		}
		if match {
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				return m.Counter.GetValue()
			default:
				return m.Gauge.GetValue()
			}
		}
	}
	t.Fatalf("no sample %s%v", name, labels)
	return 0
}

func TestExpositionParsesAndAgrees(t *testing.T) {
	var b bytes.Buffer
	writeExposition(&b, sampleSnapshot(), "1.2.3")
	fams := parse(t, b.String())
	checks := []struct {
		name   string
		labels []string
		want   float64
		typ    dto.MetricType
	}{
		{"hearth_guest_cpu_usage_ratio", nil, 0.45, dto.MetricType_GAUGE},
		{"hearth_guest_cpu_mode_ratio", []string{"mode", "steal"}, 0.02, dto.MetricType_GAUGE},
		{"hearth_guest_cpu_seconds_total", []string{"mode", "user"}, 951.69, dto.MetricType_COUNTER},
		{"hearth_guest_memory_usage_ratio", nil, 0.25, dto.MetricType_GAUGE},
		{"hearth_guest_memory_total_bytes", nil, 4 << 30, dto.MetricType_GAUGE},
		{"hearth_guest_load", []string{"window", "15m"}, 0.125, dto.MetricType_GAUGE},
		{"hearth_guest_processes", []string{"state", "blocked"}, 1, dto.MetricType_GAUGE},
		{"hearth_guest_network_transmit_bytes_total", []string{"interface", "eth0"}, 2000, dto.MetricType_COUNTER},
		{"hearth_guest_disk_written_bytes_total", []string{"device", "vda"}, 8192, dto.MetricType_COUNTER},
		{"hearth_guest_page_cache_dirtied_bytes_total", nil, 21 << 20, dto.MetricType_COUNTER},
		{"hearth_guest_page_cache_written_back_bytes_total", nil, 16 << 10, dto.MetricType_COUNTER},
		{"hearth_guest_paged_in_bytes_total", nil, 4096, dto.MetricType_COUNTER},
		{"hearth_guest_major_faults_total", nil, 7, dto.MetricType_COUNTER},
		{"hearth_guest_filesystem_used_bytes", []string{"mountpoint", "/", "fstype", "ext4"}, 4 << 30, dto.MetricType_GAUGE},
		{"hearth_agent_info", []string{"version", "1.2.3", "hostname", "web-1"}, 1, dto.MetricType_GAUGE},
		{"hearth_agent_sample_timestamp_seconds", nil, 1795680719.5, dto.MetricType_GAUGE},
	}
	for _, c := range checks {
		if got := value(t, fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
		if fams[c.name].GetType() != c.typ {
			t.Errorf("%s is a %v, want %v", c.name, fams[c.name].GetType(), c.typ)
		}
	}
	// The overmounted "/" appears once (duplicate series would break a scrape).
	if n := len(fams["hearth_guest_filesystem_size_bytes"].Metric); n != 1 {
		t.Errorf("%d filesystem series for one mountpoint", n)
	}
	// Every counter ends in _total and every name carries the hearth prefix.
	for name, f := range fams {
		if f.GetType() == dto.MetricType_COUNTER && !strings.HasSuffix(name, "_total") {
			t.Errorf("counter %s does not end in _total", name)
		}
		if !strings.HasPrefix(name, "hearth_") {
			t.Errorf("%s lacks the hearth_ prefix", name)
		}
	}
}

func TestExpositionWithoutCPUYet(t *testing.T) {
	s := sampleSnapshot()
	s.CPUUsagePercent, s.MemUsagePercent, s.Network, s.Disks, s.Filesystems = nil, nil, nil, nil, nil
	var b bytes.Buffer
	writeExposition(&b, s, "v")
	fams := parse(t, b.String())
	for _, absent := range []string{"hearth_guest_cpu_usage_ratio", "hearth_guest_memory_usage_ratio", "hearth_guest_network_receive_bytes_total"} {
		if _, ok := fams[absent]; ok {
			t.Errorf("%s present without data", absent)
		}
	}
}

// FuzzExpositionLabels: interface, device and mount names come from the guest and can hold
// anything; the output must always parse, with the value carried through.
func FuzzExpositionLabels(f *testing.F) {
	f.Add("eth0", "/mnt/a b", "vda")
	f.Add("we\"ird\\n", "/x\ny", "\xff\xfe")
	f.Fuzz(func(t *testing.T, iface, mount, dev string) {
		s := sampleSnapshot()
		s.Network = []api.NetIface{{Interface: iface, RxBytes: 7}}
		s.Filesystems = []api.Filesystem{{Mountpoint: mount, Device: dev, FSType: "ext4", SizeBytes: 9}}
		s.Disks = []api.Disk{{Device: dev, Reads: 3}}
		s.Hostname = iface + mount
		var b bytes.Buffer
		writeExposition(&b, s, "v")
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(strings.NewReader(b.String()))
		if err != nil {
			t.Fatalf("parse: %v\n%s", err, b.String())
		}
		if got := fams["hearth_guest_network_receive_bytes_total"].Metric[0].Counter.GetValue(); got != 7 {
			t.Fatalf("value lost: %v", got)
		}
	})
}
