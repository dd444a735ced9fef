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
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

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

	ln     net.Listener
	server *http.Server
	done   chan error
	lock   *os.File // the data dir's lock, held while serving
	closed sync.Once
	err    error // Close's outcome
}

// openServices opens and migrates the store and builds the use-case services.
func openServices(ctx context.Context, cfg config.Config, logger *slog.Logger) (*Main, error) {
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
	prov := &provision.Provisioner{PublicURL: cfg.PublicURL, ManagerKey: key}
	rules := vm.Rules{CIDRs: cfg.GuestCIDRs}
	rt, err := runtimeFor(cfg, logger)
	if err != nil {
		db.Close()
		return nil, err
	}
	vms := vm.NewService(db, rules, cfg.DataDir).WithSeeder(prov).WithRuntime(rt)
	if rt.Network != nil && cfg.AllocateIPs {
		vms.WithAllocator(rt.Network)
		prov.Gateway = rt.Network.Gateway().String()
	}
	jobs := &install.Jobs{DB: db, VMs: vms, Installer: &sshinstall.Installer{Agent: agents.For}, Agent: agent.New(agent.Options{}),
		Signer: key, PublicURL: cfg.PublicURL, Logger: logger}
	return &Main{
		Config: cfg, Logger: logger, DB: db, VMs: vms, Jobs: jobs, Images: &image.Service{DB: db, DataDir: cfg.DataDir, Logger: logger},
		Metrics: metrics.New(vms, metrics.Options{Interval: cfg.MetricsInterval, Logger: logger, Store: db}),
		Auth:    auth.NewService(db, throttle(logger), 0),
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
	m, err := openServices(ctx, cfg, logger)
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
	go m.Metrics.Run(ctx)
	h := web.New(web.Deps{VMs: m.VMs, Auth: m.Auth, Installs: m.Jobs, Metrics: m.Metrics, Images: m.Images, Ping: m.DB.Ping,
		WriteProbe: (&writeProbe{db: m.DB, dataDir: cfg.DataDir}).check, Logger: logger,
		SecureCookies: cfg.SecureCookies(), Version: version})
	m.server = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	m.done = make(chan error, 1)
	go func() { m.done <- m.server.Serve(m.ln) }()
	go m.sweepSessions(ctx)

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
	err := m.server.Shutdown(sctx)
	m.VMs.Detach() // VMs keep running; the next start re-attaches to them
	if e := <-m.done; e != nil && !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	err = errors.Join(err, m.DB.Close())
	m.lock.Close() // last: the next manager may start now
	return err
}

// sweepSessions deletes expired sessions hourly so the table does not grow forever.
func (m *Main) sweepSessions(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := m.DB.DeleteExpiredSessions(ctx); err != nil {
				m.Logger.Warn("sweep sessions", "error", err)
			} else if n > 0 {
				m.Logger.Info("swept expired sessions", "count", n)
			}
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
func runtimeFor(cfg config.Config, logger *slog.Logger) (vm.Runtime, error) {
	rt := vm.Runtime{Drivers: map[string]hypervisor.Driver{}, ImageDirs: cfg.ImageDirs, Logger: logger, StopTimeout: cfg.StopTimeout}
	if def := vm.DefaultImageDir(cfg.DataDir); len(cfg.ImageDirs) == 1 && cfg.ImageDirs[0] == def {
		if err := os.MkdirAll(def, 0o750); err != nil {
			return rt, fmt.Errorf("create the image directory: %w", err)
		}
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
	if cfg.BridgeCIDR.IsValid() {
		n, err := hostnet.New(hostnet.Config{Bridge: cfg.Bridge, CIDR: cfg.BridgeCIDR, Masquerade: cfg.Masquerade})
		if err != nil {
			return rt, err
		}
		rt.Network = n
	} else {
		logger.Info("host networking off: set HEARTH_BRIDGE_CIDR (e.g. 10.77.0.1/24) to give VMs a NIC on a bridge")
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
	return rt, nil
}
