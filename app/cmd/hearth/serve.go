package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/procfs"

	"hearth/app"
	"hearth/app/agent"
	"hearth/app/auth"
	"hearth/app/config"
	"hearth/app/hypervisor"
	"hearth/app/hypervisor/firecracker"
	"hearth/app/hypervisor/hostnet"
	"hearth/app/hypervisor/qemu"
	"hearth/app/image"
	"hearth/app/install"
	"hearth/app/metrics"
	"hearth/app/node"
	"hearth/app/store"
	"hearth/app/vm"
	"hearth/app/web"
	"hearth/provision"
	"hearth/provision/agents"
	"hearth/provision/sshinstall"
)

// Main is a running manager: what serve starts and what end-to-end tests start on :0.
type Main struct {
	Config  config.Config
	Logger  *slog.Logger
	DB      *store.DB
	Auth    *auth.Service
	VMs     *vm.Service
	Jobs    *install.Jobs
	Images  *image.Service
	Metrics *metrics.Collector
	Nodes   *node.Service

	ln     net.Listener
	server *http.Server
	web    *web.Server
	done   chan error
	lock   *os.File     // the data dir's lock, held while serving
	guest  *http.Server // the guest endpoints on the bridge address, when the manager listens elsewhere
	// Network is the VMs' bridge network (nil: none); NetworkNote says why there is none.
	Network     *hostnet.Net
	NetworkNote string
	prov        *provision.Provisioner
	closed      sync.Once
	err         error              // Close's outcome
	stop        context.CancelFunc // ends the background loops (collector, heartbeat, sweeps)
}

// openServices opens and migrates the store and builds the use-case services. Only a
// serving manager (serving) sees to the VMs' network: a one-shot command neither chooses
// nor records one.
func openServices(ctx context.Context, cfg config.Config, logger *slog.Logger, serving bool) (*Main, error) {
	db, err := store.Open(ctx, cfg.DatabaseURL, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	applied, err := db.Migrate(ctx)
	if err != nil {
		db.Close()
		return nil, err
	}
	if len(applied) > 0 {
		logger.Info("applied migrations", "migrations", applied)
	}
	key, err := provision.LoadOrCreateManagerKey(cfg.DataDir)
	if err != nil {
		db.Close()
		return nil, err
	}
	sealKey, err := provision.LoadOrCreateSealKey(cfg.DataDir)
	if err != nil {
		db.Close()
		return nil, err
	}
	prov := &provision.Provisioner{PublicURL: cfg.PublicURL, ManagerKey: key, SealKey: sealKey}
	nodes := &node.Service{DB: db, Logger: logger, Secret: cfg.ClusterSecret}
	rules := vm.Rules{CIDRs: cfg.GuestCIDRs, Peers: nodes.Peers}
	rt, note, err := runtimeFor(ctx, cfg, db, logger, serving)
	if err != nil {
		db.Close()
		return nil, err
	}
	vms := vm.NewService(db, rules, cfg.DataDir).WithSeeder(prov).WithRuntime(rt).WithNode(cfg.Node)
	self := app.Node{Name: cfg.Node, URL: cfg.NodeURL, CPUs: runtime.NumCPU(), MemoryMiB: hostMemoryMiB(), Version: version, Interval: cfg.NodeHeartbeat}
	if rt.Network != nil {
		self.Network = rt.Network.Network().String()
	}
	nodes.Self = self
	if rt.Network != nil && cfg.AllocateIPs {
		vms.WithAllocator(rt.Network)
		prov.Gateway = rt.Network.Gateway().String()
	}
	vms.WithAfterRestore(clockStepper(vms, agent.New(agent.Options{}), logger))
	jobs := &install.Jobs{DB: db, VMs: vms, Installer: &sshinstall.Installer{Agent: agents.For}, Agent: agent.New(agent.Options{}),
		Signer: key, PublicURL: cfg.PublicURL, Logger: logger}
	vms.WithInstaller(func(ctx context.Context, id string, by app.Actor) error { // a one-click install another node queued
		_, err := jobs.Start(ctx, id, app.Credentials{}, by)
		return err
	})
	return &Main{
		Config: cfg, Logger: logger, DB: db, VMs: vms, Jobs: jobs, Images: &image.Service{DB: db, Node: cfg.Node, DataDir: cfg.DataDir, Logger: logger},
		Network: rt.Network, NetworkNote: note, prov: prov,
		Metrics: metrics.New(vms, metrics.Options{Interval: cfg.MetricsInterval, Logger: logger, Store: db}),
		Auth:    auth.NewService(db, throttle(logger), 0),
		Nodes:   nodes,
	}, nil
}

// throttle limits failed sign-ins: 10 per address and name in 15 minutes (see auth.Throttle).
func throttle(logger *slog.Logger) *auth.Throttle {
	t := auth.NewThrottle(10, 15*time.Minute)
	t.Logger = logger
	return t
}

// Start opens everything and starts serving; it returns once the listener is bound.
// stdout gets what the operator must see: the URL, and a generated admin password.
func Start(ctx context.Context, cfg config.Config, logger *slog.Logger, stdout io.Writer) (*Main, error) {
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if _, err := tempDir(cfg.DataDir); err != nil {
		lock.Close()
		return nil, err
	}
	m, err := openServices(ctx, cfg, logger, true)
	if err != nil {
		lock.Close()
		return nil, err
	}
	m.lock = lock
	fail := func(err error) (*Main, error) {
		if m.ln != nil {
			m.ln.Close()
		}
		m.DB.Close()
		lock.Close()
		return nil, err
	}
	// The port first: a start that cannot serve (port in use) changes nothing, and above all
	// creates no admin whose generated password would never be shown.
	m.ln, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fail(fmt.Errorf("listen on %s: %w", cfg.Listen, err))
	}
	// The node first: on SQLite a database that is another node's is refused before
	// anything is taken over. A node URL on port 0 (listen on any free port) is the port
	// the listener got.
	if u, err := url.Parse(m.Nodes.Self.URL); err == nil && u.Port() == "0" {
		if _, port, err := net.SplitHostPort(m.ln.Addr().String()); err == nil {
			u.Host = net.JoinHostPort(u.Hostname(), port)
			m.Nodes.Self.URL = u.String()
		}
	}
	if err := m.Nodes.Register(ctx); err != nil {
		return fail(fmt.Errorf("node %s: %w", cfg.Node, err))
	}
	if err := m.VMs.Reattach(ctx); err != nil {
		return fail(fmt.Errorf("re-attach running VMs: %w", err))
	}
	if removed, err := m.VMs.SweepOrphans(ctx); err != nil {
		return fail(fmt.Errorf("remove what a crash left in the data dir: %w", err))
	} else if len(removed) > 0 {
		logger.Warn("removed files a crash left in the data dir", "count", len(removed), "files", removed)
	}
	if err := m.Images.Sweep(ctx); err != nil {
		return fail(fmt.Errorf("images left being made: %w", err))
	}
	if n, err := m.DB.FailRunningJobs(ctx, "the manager restarted while this install ran; run it again"); err != nil {
		return fail(err)
	} else if n > 0 {
		logger.Warn("marked interrupted agent installs as failed", "count", n)
	}
	generated, created, err := m.Auth.EnsureAdmin(ctx, cfg.AdminPassword)
	if err != nil {
		return fail(err)
	}
	guestLn, err := m.guestEndpoints(logger)
	if err != nil {
		return fail(err)
	}
	ctx, m.stop = context.WithCancel(ctx)
	go m.Metrics.Run(ctx)
	go m.Nodes.Run(ctx)
	go m.VMs.RunActions(ctx, 2*cfg.NodeHeartbeat, logger)
	h := web.New(web.Deps{VMs: m.VMs, Auth: m.Auth, Installs: m.Jobs, Metrics: m.Metrics, Images: m.Images, Nodes: m.Nodes, Ping: m.DB.Ping,
		WriteProbe: (&writeProbe{db: m.DB, dataDir: cfg.DataDir}).check, Logger: logger,
		SecureCookies: cfg.SecureCookies(), Version: version, NetworkNote: m.NetworkNote, ConsoleIdle: cfg.ConsoleIdle})
	m.web = h
	m.server = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	m.done = make(chan error, 1)
	go func() { m.done <- m.server.Serve(m.ln) }()
	if guestLn != nil {
		m.guest = &http.Server{Handler: web.GuestOnly(h), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10,
			ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
		go m.guest.Serve(guestLn) //nolint:errcheck // ends with Close
	}
	go m.sweepSessions(ctx)
	if m.NetworkNote != "" {
		logger.Warn(m.NetworkNote)
	}

	logger.Info("serving", "url", m.URL(), "database", m.DB.Dialect(), "where", m.DB.Where, "version", version)
	if err := m.VMs.CanProvision(); err != nil {
		logger.Warn("new VMs cannot be provisioned", "reason", app.ErrorMessage(err))
	}
	if cfg.GuestsCannotReach() {
		logger.Warn("HEARTH_PUBLIC_URL is a loopback address, which guests cannot reach; set it to the address of this host on the guests' network",
			"public_url", cfg.PublicURL)
	}
	if ap, err := netip.ParseAddrPort(m.ln.Addr().String()); err == nil && ap.Addr().IsUnspecified() {
		fmt.Fprintf(stdout, "Hearth is running at %s, on every interface of this host (database: %s)\n", m.URL(), m.DB.Where)
	} else {
		fmt.Fprintf(stdout, "Hearth is running at %s (database: %s)\n", m.URL(), m.DB.Where)
	}
	switch {
	case created && generated != "":
		fmt.Fprintf(stdout, "Created user admin with password %s\nIt is shown only this once; change it with: hearth user passwd admin\n", generated)
	case created:
		fmt.Fprintln(stdout, "Created user admin with the password from HEARTH_ADMIN_PASSWORD.")
	default:
		fmt.Fprintln(stdout, "Sign in with your user; add one with: hearth user create NAME")
	}
	return m, nil
}

// hostMemoryMiB is the host's memory (MemTotal), read as the dashboard reads it; 0 when
// /proc/meminfo cannot be read.
func hostMemoryMiB() int {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return 0
	}
	mi, err := fs.Meminfo()
	if err != nil || mi.MemTotalBytes == nil {
		return 0
	}
	return int(*mi.MemTotalBytes >> 20)
}

// URL is where the manager serves, as an operator on this host would open it: listening on
// every interface ("0.0.0.0", "[::]") it is the loopback address.
func (m *Main) URL() string {
	ap, err := netip.ParseAddrPort(m.ln.Addr().String())
	if err != nil {
		return "http://" + m.ln.Addr().String()
	}
	if ap.Addr().IsUnspecified() {
		ap = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ap.Port())
	}
	return "http://" + ap.String()
}

// Wait blocks until ctx ends, then shuts down gracefully: requests in flight get 10 s.
func (m *Main) Wait(ctx context.Context) error {
	select {
	case err := <-m.done:
		m.DB.Close()
		m.lock.Close()
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	return m.Close()
}

// Close stops serving and closes the database; calling it again returns the first outcome.
func (m *Main) Close() error {
	m.closed.Do(func() { m.err = m.close() })
	return m.err
}

func (m *Main) close() error {
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if m.stop != nil {
		m.stop()
	}
	err := m.server.Shutdown(sctx)
	if m.guest != nil {
		m.guest.Close()
	}
	m.VMs.Detach() // VMs keep running; the next start re-attaches to them
	if m.web != nil {
		m.web.WaitConsoles(2 * time.Second) // their sessions end with the hubs: audit them first
	}
	if e := <-m.done; e != nil && !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	err = errors.Join(err, m.DB.Close())
	m.lock.Close() // last: the next manager may start now
	return err
}

// sweepSessions deletes expired sessions and actions finished a week ago, hourly, on one
// node of the cluster at a time, so the tables do not grow forever.
func (m *Main) sweepSessions(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := m.DB.OnceInCluster(ctx, "hearth.sweep_sessions", func(ctx context.Context) error {
			if n, err := m.DB.DeleteExpiredSessions(ctx); err != nil {
				return err
			} else if n > 0 {
				m.Logger.Info("swept expired sessions", "count", n)
			}
			if n, err := m.DB.DeleteFinishedActions(ctx, time.Now().Add(-7*24*time.Hour)); err != nil {
				return err
			} else if n > 0 {
				m.Logger.Info("swept actions finished a week ago", "count", n)
			}
			return nil
		}); err != nil {
			m.Logger.Warn("sweep sessions and finished actions", "error", err)
		}
	}
}

func newLogger(level string, w io.Writer) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level)) // config.Load has validated it
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

func serve(ctx context.Context, args []string, getenv func(string) string, setenv func(key, value string) error, stdout, stderr io.Writer) error {
	cfg, err := config.Load(args, getenv)
	if err != nil {
		return err
	}
	// The process's temporary files (the ISO writer stages seeds in os.TempDir) go to the
	// data dir's tmp/, which Start clears and creates before anything uses it. Only serve
	// does this: it is the process that writes seeds, and it holds the data dir.
	tmp, err := filepath.Abs(filepath.Join(cfg.DataDir, "tmp"))
	if err != nil {
		return err
	}
	if err := setenv("TMPDIR", tmp); err != nil {
		return err
	}
	m, err := Start(ctx, cfg, newLogger(cfg.LogLevel, stderr), stdout)
	if err != nil {
		return err
	}
	return m.Wait(ctx)
}

// cliActor is who the audit log names for shell commands.
var cliActor = app.Actor{Kind: app.ActorSystem, Name: "cli"}

// runtimeFor finds the hypervisors on this host. "auto" prefers Firecracker where it and
// KVM are usable, and QEMU (which also runs without KVM) otherwise.
func runtimeFor(ctx context.Context, cfg config.Config, db *store.DB, logger *slog.Logger, serving bool) (vm.Runtime, string, error) {
	rt := vm.Runtime{Drivers: map[string]hypervisor.Driver{}, ImageDirs: cfg.ImageDirs, Logger: logger, StopTimeout: cfg.StopTimeout}
	if err := os.MkdirAll(vm.DefaultImageDir(cfg.DataDir), 0o750); err != nil {
		return rt, "", fmt.Errorf("create the image directory: %w", err)
	}
	if p, err := exec.LookPath(cfg.QEMU); err == nil {
		rt.Drivers["qemu"] = &qemu.Driver{Binary: p}
	}
	if p, err := exec.LookPath(cfg.Firecracker); err == nil {
		fc := &firecracker.Driver{Binary: p}
		if cfg.Jailer != "" {
			fc.Jailer = &firecracker.Jailer{Binary: cfg.Jailer, UID: cfg.JailerUID, GID: cfg.JailerGID, ChrootBase: cfg.JailerChroot}
		}
		rt.Drivers["firecracker"] = fc
	}
	var note string
	if serving {
		n, why, err := network(ctx, cfg, db)
		if err != nil {
			return rt, "", err
		}
		rt.Network, note = n, why
	}
	rt.Default = cfg.Hypervisor
	if rt.Default == "auto" {
		switch {
		case rt.Drivers["firecracker"] != nil && qemu.KVMUsable():
			rt.Default = "firecracker"
		case rt.Drivers["qemu"] != nil:
			rt.Default = "qemu"
		default:
			rt.Default = "qemu" // starting then says it is missing
		}
	}
	var found []string
	for name := range rt.Drivers {
		found = append(found, name)
	}
	logger.Info("hypervisors", "found", found, "default", rt.Default, "kvm", qemu.KVMUsable())
	return rt, note, nil
}

// bridgeSetting keeps the network each node chose for its bridge: bridge_cidr/<node>
// (bridge_cidr alone: the one host of before nodes, adopted by the first node).
const bridgeSetting = "bridge_cidr"

// canManageLinks says whether this process may make its bridge (a variable so that a test
// can play a manager without the privilege; hostnet's own test drops it for real).
var canManageLinks = hostnet.CanManage

// network is the VMs' bridge network: the one configured; else, when the manager may manage
// links, its own (a free /24 of 10.77.0.0/16, chosen once and kept in the database, as Incus
// does for incusbr0); else none, with the reason and the remedy.
func network(ctx context.Context, cfg config.Config, db *store.DB) (*hostnet.Net, string, error) {
	cidr := cfg.BridgeCIDR
	switch {
	case cfg.NoNetwork:
		return nil, "VMs get no network (HEARTH_BRIDGE_CIDR=none).", nil
	case cidr.IsValid():
	default:
		if err := canManageLinks(); err != nil {
			return nil, fmt.Sprintf("VMs get no network: %s. Run the manager as root (or with CAP_NET_ADMIN) and it makes its bridge %s, or set HEARTH_BRIDGE_CIDR to a bridge network of yours.", err, cfg.Bridge), nil
		}
		var err error
		if cidr, err = nodeNetwork(ctx, cfg, db); err != nil {
			return nil, "", err
		}
	}
	n, err := hostnet.New(hostnet.Config{Bridge: cfg.Bridge, CIDR: cidr, Masquerade: cfg.Masquerade})
	return n, "", err
}

// nodeNetwork is this node's own bridge network: the one it chose before, or a free /24 of
// hostnet.DefaultPool that neither this host nor any other node uses (several hosts on one
// PostgreSQL each get their own, so guest addresses never clash), kept in the database.
func nodeNetwork(ctx context.Context, cfg config.Config, db *store.DB) (netip.Prefix, error) {
	key := bridgeSetting + "/" + cfg.Node
	for attempt := 0; ; attempt++ {
		kept, err := db.SettingsWithPrefix(ctx, bridgeSetting)
		if err != nil {
			return netip.Prefix{}, err
		}
		if mine, err := netip.ParsePrefix(kept[key]); err == nil {
			if holder := clash(kept, key, mine); holder == "" || holder > cfg.Node || attempt > 3 {
				return mine, nil // the lower node name keeps a network two nodes chose at once
			}
		} else if old, err := netip.ParsePrefix(kept[bridgeSetting]); err == nil && clash(kept, key, old) == "" {
			// The network of the one host before nodes: the first node to start keeps it.
			if err := db.SetSetting(ctx, key, old.String()); err != nil {
				return netip.Prefix{}, err
			}
			continue
		}
		used, err := hostnet.InUse(cfg.Bridge)
		if err != nil {
			return netip.Prefix{}, err
		}
		for k, v := range kept {
			if p, err := netip.ParsePrefix(v); err == nil && k != key {
				used = append(used, p.Masked())
			}
		}
		chosen, err := hostnet.Choose(hostnet.DefaultPool, used)
		if err != nil {
			return netip.Prefix{}, err
		}
		if err := db.SetSetting(ctx, key, chosen.String()); err != nil {
			return netip.Prefix{}, err
		}
	}
}

// clash names another node whose kept network overlaps p ("" for none).
func clash(kept map[string]string, key string, p netip.Prefix) string {
	for k, v := range kept {
		if other, err := netip.ParsePrefix(v); err == nil && k != key && k != bridgeSetting && other.Overlaps(p) {
			return strings.TrimPrefix(k, bridgeSetting+"/")
		}
	}
	return ""
}

// guestEndpoints makes the VMs' network ready and lets guests reach the manager on it: the
// bridge is made now (not at the first VM's start), and when the manager listens on a
// single address elsewhere (loopback, by default) a second listener on the bridge's address
// and the same port serves the guest endpoints, and nothing else. Unless HEARTH_PUBLIC_URL
// says otherwise, that is the URL seeds give guests.
func (m *Main) guestEndpoints(logger *slog.Logger) (net.Listener, error) {
	if m.Network == nil {
		return nil, nil
	}
	if err := m.Network.EnsureBridge(); err != nil {
		return nil, fmt.Errorf("the VMs' network: %w", err)
	}
	bridge := m.Network.Gateway()
	main, err := netip.ParseAddrPort(m.ln.Addr().String())
	if err != nil {
		return nil, err
	}
	on := netip.AddrPortFrom(bridge, main.Port())
	var ln net.Listener
	if !main.Addr().IsUnspecified() && main.Addr() != bridge {
		if ln, err = net.Listen("tcp", on.String()); err != nil {
			return nil, fmt.Errorf("listen for guests on %s: %w", on, err)
		}
	}
	if !m.Config.PublicURLSet {
		url := "http://" + on.String()
		m.Config.PublicURL, m.prov.PublicURL, m.Jobs.PublicURL = url, url, url
	}
	logger.Info("VMs' network", "bridge", m.Network.Config().Bridge, "cidr", m.Network.Config().CIDR.String(), "guests_reach", m.Config.PublicURL)
	return ln, nil
}
