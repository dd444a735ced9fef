package metrics

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/procfs"

	"hearth/app"
	"hearth/app/agent"
	"hearth/app/hypervisor"
	"hearth/app/store"
	"hearth/guest/api"
)

// VMs is what the collector needs of the VM service.
type VMs interface {
	// Running returns the running VMs (a VM in another state may be among them: the
	// collector checks).
	Running(ctx context.Context) ([]*app.VM, error)
	Machine(id string) hypervisor.Machine
	// CheckGuestIP applies the guest-IP rules to the address about to be dialled.
	CheckGuestIP(raw string) (netip.Addr, error)
}

// Options tune the collector; zero values take the defaults.
type Options struct {
	Interval    time.Duration // HEARTH_METRICS_INTERVAL, default 5 s
	Timeout     time.Duration // per agent request, default 2 s
	Concurrency int           // polls at once, default 64
	BodyCap     int64         // agent answer cap, default 1 MiB
	AgentPort   int           // default api.DefaultPort (8080)
	History     time.Duration // kept in memory, default 15 min (longer windows read Store)
	ProcRoot    string        // default /proc
	Logger      *slog.Logger
	// Store persists samples (raw for RawFor, then minute averages for KeepFor); nil keeps
	// them in memory only.
	Store   Store
	RawFor  time.Duration // default 24 h
	KeepFor time.Duration // default 7 days
}

// Store is where samples are persisted (store.DB).
type Store interface {
	InsertSamples(ctx context.Context, rows []store.SampleRow) error
	CompactSamples(ctx context.Context, now time.Time, rawFor, keepFor time.Duration, batch int) (int, error)
	Samples(ctx context.Context, vmID string, since time.Time) ([]store.SampleRow, error)
	Minutes(ctx context.Context, vmID string, since time.Time) ([]store.MinuteRow, error)
	LatestSamples(ctx context.Context, vmIDs []string, since time.Time) (map[string]store.SampleRow, error)
	SamplesOf(ctx context.Context, vmIDs []string, since time.Time) (map[string][]store.SampleRow, error)
	OnceInCluster(ctx context.Context, name string, f func(context.Context) error) (bool, error)
}

// Collector polls every running VM each interval.
type Collector struct {
	vms   VMs
	opts  Options
	agent *agent.Client
	proc  procfs.FS

	mu    sync.Mutex
	state map[string]*vmState

	// Health of the collector itself, for its Prometheus series.
	statsMu      sync.Mutex
	lastRound    time.Duration
	rounds       uint64
	overruns     uint64            // rounds that took longer than the interval
	lastOverrun  time.Duration     // how much the last round took beyond the interval, 0 if none
	pollErrors   map[string]uint64 // by kind: agent, host, counters
	roundSeconds []float64         // recent round durations, for the p99 the bench reports
}

// vmState is what the collector remembers of one VM between polls.
type vmState struct {
	mu           sync.Mutex
	ring         *ring
	prevHost     *hostReading
	prevCounters *hypervisor.Counters
	prevAt       time.Time
	run          runID // of the VM at the last poll
	agentVersion string
	agentSeen    time.Time // last answer from the agent
	lastError    string

	// The agent's latest page-cache counters, the agent's time of them, and the rates from
	// the last two distinct readings (a poll that finds the same reading keeps them).
	pageCache *api.PageCache
	pcAt      time.Time
	pcRates   [4]*float64
	// The filesystems the agent reported last in this run, and when.
	filesystems []api.Filesystem
	fsAt        time.Time
}

// runID names one run of a VM: its hypervisor process, told from a reused pid by its
// identity. Samples of another run are history, never the current figure.
type runID struct {
	pid      int
	identity string
}

func runOf(v *app.VM) runID { return runID{v.PID, v.PIDIdentity} }

// New returns a collector over vms.
func New(vms VMs, opts Options) *Collector {
	if opts.Interval <= 0 {
		opts.Interval = 5 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 64
	}
	if opts.BodyCap <= 0 {
		opts.BodyCap = 1 << 20
	}
	if opts.History <= 0 {
		opts.History = 15 * time.Minute
	}
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if opts.RawFor <= 0 {
		opts.RawFor = 24 * time.Hour
	}
	if opts.KeepFor <= 0 {
		opts.KeepFor = 7 * 24 * time.Hour
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	fs, _ := procfs.NewFS(opts.ProcRoot)
	return &Collector{vms: vms, opts: opts, agent: agent.New(agent.Options{Port: opts.AgentPort, Timeout: opts.Timeout, BodyCap: opts.BodyCap}), proc: fs,
		state: map[string]*vmState{}, pollErrors: map[string]uint64{}}
}

// Interval is the polling interval.
func (c *Collector) Interval() time.Duration { return c.opts.Interval }

// Run polls until ctx ends.
func (c *Collector) Run(ctx context.Context) {
	t := time.NewTicker(c.opts.Interval)
	defer t.Stop()
	lastCompact := time.Now()
	for {
		c.Round(ctx)
		if c.opts.Store != nil && time.Since(lastCompact) > 10*time.Minute {
			c.Compact(ctx, time.Now())
			lastCompact = time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Round polls every running VM once with at most Concurrency workers: a VM that hangs
// costs one worker for at most the timeout, never holds up the others beyond that, and no
// round starts a goroutine per VM. The round's samples are persisted in one statement. A
// round that takes longer than the interval is reported (a log line and
// hearth_collector_round_overrun_seconds); Run's ticker drops the ticks it missed, so
// rounds never pile up.
func (c *Collector) Round(ctx context.Context) {
	start := time.Now()
	vms, err := c.vms.Running(ctx)
	if err != nil {
		c.opts.Logger.Warn("metrics: list VMs", "error", err)
		return
	}
	type job struct {
		v  *app.VM
		st *vmState
	}
	var jobs []job
	running := make(map[string]bool, len(vms))
	for _, v := range vms {
		if v.State.Live() {
			running[v.ID] = true
			jobs = append(jobs, job{v, c.stateFor(v.ID)})
		}
	}
	c.mu.Lock()
	for id := range c.state { // a VM that stopped or is gone lets its history go
		if !running[id] {
			delete(c.state, id)
		}
	}
	c.mu.Unlock()

	rows := make([]store.SampleRow, len(jobs))
	taken := make([]bool, len(jobs))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < min(c.opts.Concurrency, len(jobs)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				pctx, cancel := context.WithTimeout(ctx, c.opts.Timeout+time.Second)
				if s, ok := c.poll(pctx, jobs[i].v, jobs[i].st); ok && c.opts.Store != nil {
					rows[i], taken[i] = row(jobs[i].v.ID, s), true
				}
				cancel()
			}
		}()
	}
	for i := range jobs {
		next <- i
	}
	close(next)
	wg.Wait()
	if c.opts.Store != nil {
		kept := rows[:0]
		for i, r := range rows {
			if taken[i] {
				kept = append(kept, r)
			}
		}
		if err := c.opts.Store.InsertSamples(ctx, kept); err != nil {
			c.countError("store")
			c.opts.Logger.Warn("metrics: persist samples", "error", err)
		}
	}
	d := time.Since(start)
	over := max(0, d-c.opts.Interval)
	if over > 0 {
		c.opts.Logger.Warn("metrics: polling round overran its interval", "took", d.Round(time.Millisecond),
			"interval", c.opts.Interval, "vms", len(jobs), "concurrency", c.opts.Concurrency)
	}
	c.statsMu.Lock()
	c.lastRound, c.rounds, c.lastOverrun = d, c.rounds+1, over
	if over > 0 {
		c.overruns++
	}
	c.roundSeconds = append(c.roundSeconds, d.Seconds())
	if len(c.roundSeconds) > 1000 {
		c.roundSeconds = c.roundSeconds[len(c.roundSeconds)-1000:]
	}
	c.statsMu.Unlock()
}

func (c *Collector) stateFor(id string) *vmState {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.state[id]
	if st == nil {
		n := int(c.opts.History/c.opts.Interval) + 1
		st = &vmState{ring: newRing(n)}
		c.state[id] = st
	}
	return st
}

func (c *Collector) countError(kind string) {
	c.statsMu.Lock()
	c.pollErrors[kind]++
	c.statsMu.Unlock()
}

// poll takes one sample of v: the agent when it answers, else the host's view of the
// hypervisor process; the hypervisor's I/O counters as rates either way.
func (c *Collector) poll(ctx context.Context, v *app.VM, st *vmState) (Sample, bool) {
	now := time.Now()
	s := Sample{Time: now.UTC()}
	st.mu.Lock()
	defer st.mu.Unlock()

	// A new process, or the first poll since the VM was last seen stopped (its state was
	// let go then): old readings mean nothing, and a kept connection to its agent may be
	// one the guest no longer knows (a restored guest has the snapshot's TCP state).
	// Paused or not: a VM restored paused is asked first after its resume.
	if run := runOf(v); st.run != run {
		st.run, st.prevHost, st.prevCounters = run, nil, nil
		st.pageCache, st.pcRates, st.filesystems = nil, [4]*float64{}, nil
		if ip, err := c.vms.CheckGuestIP(v.GuestIP); err == nil {
			c.agent.Forget(ip)
		}
	}
	s.run = st.run
	agentErr := "no guest IP registered"
	paused := v.State == app.VMPaused
	if paused {
		agentErr = "the VM is paused"
	}
	if v.GuestIP != "" && !paused {
		if ip, err := c.vms.CheckGuestIP(v.GuestIP); err != nil {
			agentErr = "guest IP refused by the rules: " + err.Error()
		} else if r, err := c.agent.Metrics(ctx, ip, v.AgentToken); err != nil {
			agentErr = err.Error()
			c.countError("agent")
		} else {
			s.Source, s.CPUPercent, s.MemPercent, s.AgentVersion = FromAgent, r.CPUUsagePercent, r.MemUsagePercent, r.AgentVersion
			st.agentVersion, st.agentSeen, agentErr = r.AgentVersion, now, ""
			st.pageCacheRates(r, now)
			s.ProgWriteBps, s.WritebackBps, s.PageInBps, s.MajorFaultsPS = st.pcRates[0], st.pcRates[1], st.pcRates[2], st.pcRates[3]
			st.filesystems, st.fsAt = r.Filesystems, now
		}
	}
	// Host side: CPU of the hypervisor process, and its RSS ("host RSS": not guest memory).
	if v.PID > 0 {
		if h, err := readHost(c.proc, v.PID, now); err == nil {
			if s.Source == "" {
				s.Source, s.HostRSSBytes = FromHost, h.rss
				if paused {
					s.Source = FromPaused
				}
				if st.prevHost != nil {
					if cpu, ok := hostCPU(*st.prevHost, h, v.VCPUs); ok {
						s.CPUPercent = &cpu
					}
				}
			}
			st.prevHost = &h
		} else if s.Source == "" {
			c.countError("host")
		}
	}
	if m := c.vms.Machine(v.ID); m != nil {
		if cur, err := m.Counters(ctx); err == nil {
			if st.prevCounters != nil {
				dt := now.Sub(st.prevAt).Seconds()
				if !cur.NoNet && !st.prevCounters.NoNet {
					s.NetRxBps, s.NetTxBps = rate(st.prevCounters.NetRxBytes, cur.NetRxBytes, dt), rate(st.prevCounters.NetTxBytes, cur.NetTxBytes, dt)
				}
				s.DiskReadBps, s.DiskWriteBps = rate(st.prevCounters.DiskReadBytes, cur.DiskReadBytes, dt), rate(st.prevCounters.DiskWriteBytes, cur.DiskWriteBytes, dt)
			}
			st.prevCounters, st.prevAt = &cur, now
		} else {
			c.countError("counters")
		}
	}
	st.lastError = agentErr
	if s.Source != "" {
		st.ring.add(s)
		return s, true
	}
	return s, false
}

// pageCacheRates takes the agent's page-cache counters of r: rates over the agent's own
// time between two distinct readings (the agent samples on its own interval, so two polls
// may see the same one: it keeps the rates it had). A counter that went back, or a clock
// that did, starts a new baseline.
func (st *vmState) pageCacheRates(r agent.Reading, now time.Time) {
	at := r.Time
	if at.IsZero() {
		at = now
	}
	pc, prev := r.PageCache, st.pageCache
	switch {
	case pc == nil:
		st.pcRates = [4]*float64{}
	case prev != nil && at.Equal(st.pcAt) && *pc == *prev:
		return
	case prev != nil && at.After(st.pcAt):
		dt := at.Sub(st.pcAt).Seconds()
		st.pcRates = [4]*float64{rate(prev.DirtiedBytes, pc.DirtiedBytes, dt), rate(prev.WrittenBackBytes, pc.WrittenBackBytes, dt),
			rate(prev.PagedInBytes, pc.PagedInBytes, dt), rate(prev.MajorFaults, pc.MajorFaults, dt)}
	default:
		st.pcRates = [4]*float64{}
	}
	st.pageCache, st.pcAt = pc, at
}

func row(vmID string, s Sample) store.SampleRow {
	r := store.SampleRow{VMID: vmID, At: s.Time, Source: s.Source, CPU: s.CPUPercent, Mem: s.MemPercent,
		NetRx: s.NetRxBps, NetTx: s.NetTxBps, DiskRead: s.DiskReadBps, DiskWrite: s.DiskWriteBps,
		ProgWrite: s.ProgWriteBps, PageIn: s.PageInBps}
	if s.HostRSSBytes > 0 {
		rss := int64(s.HostRSSBytes)
		r.HostRSS = &rss
	}
	return r
}

// Compact folds old raw samples into minute averages and expires what is past keeping.
func (c *Collector) Compact(ctx context.Context, now time.Time) {
	// Once per cluster: nodes sharing a PostgreSQL compact the same table.
	ran, err := c.opts.Store.OnceInCluster(ctx, "hearth.compact_samples", func(ctx context.Context) error {
		for {
			n, err := c.opts.Store.CompactSamples(ctx, now, c.opts.RawFor, c.opts.KeepFor, 5000)
			if err != nil || n < 5000 {
				return err
			}
		}
	})
	if err != nil {
		c.countError("store")
		c.opts.Logger.Warn("metrics: compact samples", "error", err)
	} else if !ran {
		c.opts.Logger.Debug("metrics: another node is compacting samples")
	}
}

// Persisted returns a VM's stored raw samples since t (for windows longer than memory).
func (c *Collector) Persisted(ctx context.Context, id string, since time.Time) ([]Sample, error) {
	if c.opts.Store == nil {
		return c.History(id, since), nil
	}
	rows, err := c.opts.Store.Samples(ctx, id, since)
	if err != nil {
		return nil, err
	}
	out := make([]Sample, len(rows))
	for i, r := range rows {
		out[i] = fromRow(r)
	}
	return out, nil
}

func fromRow(r store.SampleRow) Sample {
	s := Sample{Time: r.At, Source: r.Source, CPUPercent: r.CPU, MemPercent: r.Mem, NetRxBps: r.NetRx,
		NetTxBps: r.NetTx, DiskReadBps: r.DiskRead, DiskWriteBps: r.DiskWrite, ProgWriteBps: r.ProgWrite, PageInBps: r.PageIn}
	if r.HostRSS != nil {
		s.HostRSSBytes = uint64(*r.HostRSS)
	}
	return s
}

// Remote is what the database knows of a VM that another node polls (its owner persists
// each round's samples): the badge its newest stored sample gives, and that sample. A
// sample older than three intervals is stale, as for this node's own VMs.
func (c *Collector) Remote(ctx context.Context, v *app.VM, now time.Time) (Status, Sample, bool) {
	figs, err := c.RemoteFigures(ctx, []*app.VM{v}, now)
	if err != nil {
		return Status{State: StatusWaiting, Why: err.Error()}, Sample{}, false
	}
	f := figs[v.ID]
	return f.Status, f.Sample, f.Has
}

// RemoteFigures is Remote for many VMs at once (one query): what the list shows and sorts
// and filters by for other nodes' VMs.
func (c *Collector) RemoteFigures(ctx context.Context, vms []*app.VM, now time.Time) (map[string]RemoteFigure, error) {
	out := make(map[string]RemoteFigure, len(vms))
	var ids []string
	for _, v := range vms {
		if v.State.Live() && v.State != app.VMPaused && c.opts.Store != nil {
			ids = append(ids, v.ID)
		}
	}
	rows := map[string]store.SampleRow{}
	if len(ids) > 0 {
		var err error
		if rows, err = c.opts.Store.LatestSamples(ctx, ids, now.Add(-15*time.Minute)); err != nil {
			return nil, err
		}
	}
	for _, v := range vms {
		r, ok := rows[v.ID]
		st, s, has := c.remoteStatus(v, r, ok, now)
		out[v.ID] = RemoteFigure{Status: st, Sample: s, Has: has}
	}
	return out, nil
}

// RemoteFigure is one VM's badge and newest stored sample (Has false: none).
type RemoteFigure struct {
	Status Status
	Sample Sample
	Has    bool
}

// RemoteHistory is the stored samples since t of other nodes' VMs, by VM (one query): the
// list's sparklines.
func (c *Collector) RemoteHistory(ctx context.Context, ids []string, since time.Time) (map[string][]Sample, error) {
	out := map[string][]Sample{}
	if c.opts.Store == nil || len(ids) == 0 {
		return out, nil
	}
	rows, err := c.opts.Store.SamplesOf(ctx, ids, since)
	if err != nil {
		return nil, err
	}
	for id, rs := range rows {
		ss := make([]Sample, len(rs))
		for i, r := range rs {
			ss[i] = fromRow(r)
		}
		out[id] = ss
	}
	return out, nil
}

// remoteStatus is the badge of another node's VM whose newest stored sample is r (ok
// false: none in the last 15 minutes).
func (c *Collector) remoteStatus(v *app.VM, r store.SampleRow, ok bool, now time.Time) (Status, Sample, bool) {
	switch {
	case v.State == app.VMPaused:
		return Status{State: StatusPaused, Source: FromPaused, Why: "the VM is paused"}, Sample{}, false
	case !v.State.Live() || c.opts.Store == nil:
		return Status{State: StatusStopped}, Sample{}, false
	case !ok:
		return Status{State: StatusWaiting, Why: "no sample from node " + v.Node + " yet"}, Sample{}, false
	}
	s := fromRow(r)
	age := now.Sub(s.Time)
	switch {
	case age > 3*c.opts.Interval:
		return Status{State: StatusStale, Source: s.Source, Age: age}, s, true
	case s.Source == FromHost:
		return Status{State: StatusHost, Source: s.Source, Age: age, Why: "its node's agent poll failed"}, s, true
	case s.Source == FromPaused:
		return Status{State: StatusPaused, Source: s.Source, Age: age}, s, true
	}
	return Status{State: StatusLive, Source: s.Source, Age: age}, s, true
}

// Averages returns a VM's stored one-minute averages since t, as samples stamped at the
// start of their minute (for the week's chart). A minute has no source of its own: it
// counts as the agent's where it has guest memory (which only the agent reports).
func (c *Collector) Averages(ctx context.Context, id string, since time.Time) ([]Sample, error) {
	if c.opts.Store == nil {
		return nil, nil
	}
	rows, err := c.opts.Store.Minutes(ctx, id, since)
	if err != nil {
		return nil, err
	}
	out := make([]Sample, len(rows))
	for i, r := range rows {
		out[i] = Sample{Time: r.Minute, Source: FromHost, CPUPercent: r.CPU, MemPercent: r.Mem, NetRxBps: r.NetRx,
			NetTxBps: r.NetTx, DiskReadBps: r.DiskRead, DiskWriteBps: r.DiskWrite, ProgWriteBps: r.ProgWrite, PageInBps: r.PageIn}
		if r.Mem != nil {
			out[i].Source = FromAgent
		}
	}
	return out, nil
}

// Kept is how far back History reaches; longer windows read Persisted and Averages.
func (c *Collector) Kept() time.Duration { return c.opts.History }

// rate is Δ/Δt, or nil when it cannot be told (no time, or a counter that went back: the
// hypervisor restarted).
func rate(prev, cur uint64, dt float64) *float64 {
	if dt <= 0 || cur < prev {
		return nil
	}
	v := float64(cur-prev) / dt
	return &v
}

// Rounds returns how many polling rounds have completed: tests count rounds, not seconds,
// for what must happen within a number of intervals.
func (c *Collector) Rounds() uint64 {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	return c.rounds
}

// RoundDurations returns the recent polling rounds' durations, oldest first.
func (c *Collector) RoundDurations() []time.Duration {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	out := make([]time.Duration, len(c.roundSeconds))
	for i, s := range c.roundSeconds {
		out[i] = time.Duration(s * float64(time.Second))
	}
	return out
}

// Latest returns the newest sample of the VM's current run: right after a restart there is
// none, however recent the last run's.
func (c *Collector) Latest(v *app.VM) (Sample, bool) {
	c.mu.Lock()
	st := c.state[v.ID]
	c.mu.Unlock()
	if st == nil {
		return Sample{}, false
	}
	s, ok := st.ring.newest()
	if !ok || s.run != runOf(v) {
		return Sample{}, false
	}
	return s, true
}

// GuestIO is the agent's latest cumulative page-cache counters in the VM's current run.
func (c *Collector) GuestIO(v *app.VM) *api.PageCache {
	var out *api.PageCache
	c.withState(v, func(st *vmState) {
		if st.pageCache != nil {
			pc := *st.pageCache
			out = &pc
		}
	})
	return out
}

// Filesystems are the filesystems the VM's agent reported last in its current run, and
// when; nil before it reported any.
func (c *Collector) Filesystems(v *app.VM) ([]api.Filesystem, time.Time) {
	var out []api.Filesystem
	var at time.Time
	c.withState(v, func(st *vmState) { out, at = st.filesystems, st.fsAt })
	return out, at
}

// withState runs f under the lock of the VM's state, if it has one of its current run.
func (c *Collector) withState(v *app.VM, f func(*vmState)) {
	c.mu.Lock()
	st := c.state[v.ID]
	c.mu.Unlock()
	if st == nil {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.run == runOf(v) {
		f(st)
	}
}

// History returns the VM's samples since t, oldest first.
func (c *Collector) History(id string, since time.Time) []Sample {
	c.mu.Lock()
	st := c.state[id]
	c.mu.Unlock()
	if st == nil {
		return nil
	}
	return st.ring.since(since)
}

// LastError says why the agent of a VM did not answer at the last poll ("" if it did).
func (c *Collector) LastError(id string) string {
	return c.read(id, func(st *vmState) string { return st.lastError })
}

// AgentVersion is the version the VM's agent last reported.
func (c *Collector) AgentVersion(id string) string {
	return c.read(id, func(st *vmState) string { return st.agentVersion })
}

// read returns f of the VM's state under its lock, "" for a VM never polled.
func (c *Collector) read(id string, f func(*vmState) string) string {
	c.mu.Lock()
	st := c.state[id]
	c.mu.Unlock()
	if st == nil {
		return ""
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return f(st)
}
