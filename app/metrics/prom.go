package metrics

import (
	"context"
	"sort"
	"time"

	"hearth/app"
	"hearth/app/agent"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Registry returns a Prometheus registry with every VM's latest sample (labelled with its
// id and name), the collector's own health, and the Go runtime.
func (c *Collector) Registry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), promVMs{c})
	return reg
}

type promVMs struct{ c *Collector }

var (
	labels      = []string{"vm_id", "vm_name"}
	pCPU        = prometheus.NewDesc("hearth_vm_cpu_usage_ratio", "Guest CPU busy share (agent), or the hypervisor process's share of the VM's vCPUs (host fallback).", append(labels, "source"), nil)
	pMem        = prometheus.NewDesc("hearth_vm_memory_usage_ratio", "Guest memory in use (MemTotal − MemAvailable), from the agent.", labels, nil)
	pRSS        = prometheus.NewDesc("hearth_vm_host_rss_bytes", "Resident memory of the hypervisor process (host fallback; not guest memory).", labels, nil)
	pNet        = prometheus.NewDesc("hearth_vm_network_bytes_per_second", "Network rate through the VM's NIC, from the hypervisor.", append(labels, "direction"), nil)
	pDisk       = prometheus.NewDesc("hearth_vm_disk_bytes_per_second", "Disk rate of the VM, from the hypervisor.", append(labels, "direction"), nil)
	pFSSize     = prometheus.NewDesc("hearth_vm_filesystem_size_bytes", "Size of a guest filesystem (agent).", append(labels, "mountpoint", "fstype"), nil)
	pFSUsed     = prometheus.NewDesc("hearth_vm_filesystem_used_bytes", "Space used on a guest filesystem (agent).", append(labels, "mountpoint", "fstype"), nil)
	pFSAvail    = prometheus.NewDesc("hearth_vm_filesystem_avail_bytes", "Space available to unprivileged users on a guest filesystem (agent).", append(labels, "mountpoint", "fstype"), nil)
	pDirtied    = prometheus.NewDesc("hearth_vm_page_cache_dirtied_bytes_total", "Bytes the guest's programs wrote into its page cache (agent: nr_dirtied × page size).", labels, nil)
	pWritten    = prometheus.NewDesc("hearth_vm_page_cache_written_back_bytes_total", "Bytes the guest wrote back from its page cache to disks (agent: nr_written × page size).", labels, nil)
	pPagedIn    = prometheus.NewDesc("hearth_vm_paged_in_bytes_total", "Bytes the guest read from its disks (agent: pgpgin).", labels, nil)
	pMajFaults  = prometheus.NewDesc("hearth_vm_major_faults_total", "Page faults in the guest that needed a disk read (agent: pgmajfault).", labels, nil)
	pAge        = prometheus.NewDesc("hearth_vm_sample_age_seconds", "Age of the VM's latest sample.", labels, nil)
	pUp         = prometheus.NewDesc("hearth_vm_agent_up", "1 if the VM's guest agent answered the last poll.", append(labels, "agent_version"), nil)
	pRounds     = prometheus.NewDesc("hearth_collector_rounds_total", "Polling rounds completed.", nil, nil)
	pRoundLast  = prometheus.NewDesc("hearth_collector_round_seconds", "Duration of the last polling round.", nil, nil)
	pOverrun    = prometheus.NewDesc("hearth_collector_round_overrun_seconds", "How much the last polling round took beyond the interval (0: it kept up).", nil, nil)
	pOverruns   = prometheus.NewDesc("hearth_collector_round_overruns_total", "Polling rounds that took longer than the interval.", nil, nil)
	pPollErrors = prometheus.NewDesc("hearth_collector_poll_errors_total", "Failed polls by kind (agent, host, counters).", []string{"kind"}, nil)
)

func (p promVMs) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{pCPU, pMem, pRSS, pNet, pDisk, pFSSize, pFSUsed, pFSAvail, pDirtied, pWritten, pPagedIn, pMajFaults,
		pAge, pUp, pRounds, pRoundLast, pOverrun, pOverruns, pPollErrors} {
		ch <- d
	}
}

func (p promVMs) Collect(ch chan<- prometheus.Metric) {
	c := p.c
	// Every label value is made safe, so no series is ever dropped for its labels; a
	// metric that still fails is counted, not silently lost.
	failed := 0
	emit := func(d *prometheus.Desc, t prometheus.ValueType, v float64, lv ...string) {
		for i := range lv {
			lv[i] = app.CleanLine(lv[i], agent.MaxVersion)
		}
		if m, err := prometheus.NewConstMetric(d, t, v, lv...); err == nil {
			ch <- m
		} else {
			failed++
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	vms, err := c.vms.Running(ctx)
	if err == nil {
		now := time.Now()
		for _, v := range vms {
			s, ok := c.Latest(v)
			if !ok {
				continue
			}
			id, name := v.ID, v.Name
			if s.CPUPercent != nil {
				emit(pCPU, prometheus.GaugeValue, *s.CPUPercent/100, id, name, s.Source)
			}
			if s.MemPercent != nil {
				emit(pMem, prometheus.GaugeValue, *s.MemPercent/100, id, name)
			}
			if s.HostRSSBytes > 0 {
				emit(pRSS, prometheus.GaugeValue, float64(s.HostRSSBytes), id, name)
			}
			for dir, r := range map[string]*float64{"rx": s.NetRxBps, "tx": s.NetTxBps} {
				if r != nil {
					emit(pNet, prometheus.GaugeValue, *r, id, name, dir)
				}
			}
			for dir, r := range map[string]*float64{"read": s.DiskReadBps, "write": s.DiskWriteBps} {
				if r != nil {
					emit(pDisk, prometheus.GaugeValue, *r, id, name, dir)
				}
			}
			if pc := c.GuestIO(v); pc != nil {
				emit(pDirtied, prometheus.CounterValue, float64(pc.DirtiedBytes), id, name)
				emit(pWritten, prometheus.CounterValue, float64(pc.WrittenBackBytes), id, name)
				emit(pPagedIn, prometheus.CounterValue, float64(pc.PagedInBytes), id, name)
				emit(pMajFaults, prometheus.CounterValue, float64(pc.MajorFaults), id, name)
			}
			fss, _ := c.Filesystems(v)
			seen := map[string]bool{} // an overmount would make duplicate series: the first wins
			for _, fs := range fss {
				if mp := app.CleanLine(fs.Mountpoint, agent.MaxVersion); !seen[mp] {
					seen[mp] = true
					emit(pFSSize, prometheus.GaugeValue, float64(fs.SizeBytes), id, name, fs.Mountpoint, fs.FSType)
					emit(pFSUsed, prometheus.GaugeValue, float64(fs.UsedBytes), id, name, fs.Mountpoint, fs.FSType)
					emit(pFSAvail, prometheus.GaugeValue, float64(fs.AvailBytes), id, name, fs.Mountpoint, fs.FSType)
				}
			}
			emit(pAge, prometheus.GaugeValue, now.Sub(s.Time).Seconds(), id, name)
			up := 0.0
			if s.Source == FromAgent {
				up = 1
			}
			emit(pUp, prometheus.GaugeValue, up, id, name, c.AgentVersion(v.ID))
		}
	}
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	if failed > 0 {
		c.pollErrors["export"] += uint64(failed)
	}
	emit(pRounds, prometheus.CounterValue, float64(c.rounds))
	emit(pRoundLast, prometheus.GaugeValue, c.lastRound.Seconds())
	emit(pOverrun, prometheus.GaugeValue, c.lastOverrun.Seconds())
	emit(pOverruns, prometheus.CounterValue, float64(c.overruns))
	kinds := make([]string, 0, len(c.pollErrors))
	for k := range c.pollErrors {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		emit(pPollErrors, prometheus.CounterValue, float64(c.pollErrors[k]), k)
	}
}
