// Package web is Hearth's HTTP edge: the JSON API under /v1 (bearer tokens), the operator UI
// (sessions, CSRF, HTMX partials) and static files. Handlers translate between HTTP and the
// use-case packages; they hold no business rules of their own.
package web

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"hearth/app"
	"hearth/app/auth"
	"hearth/app/image"
	"hearth/app/metrics"
	"hearth/app/node"
	"hearth/app/vm"
)

// Deps is what the web layer needs from the rest of the manager.
type Deps struct {
	VMs  *vm.Service
	Auth *auth.Service
	// Installs runs agent installs over SSH; nil hides the feature.
	Installs Installs
	// Metrics is the collector; nil hides metrics.
	Metrics *metrics.Collector
	// Images records, builds and imports images; nil hides them.
	Images *image.Service
	// Nodes lists the managers sharing the database; nil: one host, no Nodes page.
	Nodes *node.Service
	Ping  func(ctx context.Context) error // database health, for /healthz
	// WriteProbe says whether the manager can still write (database and data dir); nil
	// skips that part of /healthz.
	WriteProbe func(ctx context.Context) error
	Logger     *slog.Logger
	// SecureCookies marks cookies Secure: set when the manager is reached over https.
	SecureCookies bool
	Version       string
	// NetworkNote says why VMs get no network, for the VM pages ("" when they do).
	NetworkNote string
	// ConsoleIdle disconnects a console viewer who typed nothing for this long (default
	// 30 min); ConsoleViewers bounds the viewers of one VM's console at once (default 8).
	ConsoleIdle    time.Duration
	ConsoleViewers int
}

// Installs starts and reports agent installs (install.Jobs).
type Installs interface {
	Start(ctx context.Context, vmID string, creds app.Credentials, by app.Actor) (*app.InstallJob, error)
	Latest(ctx context.Context, vmID string) (*app.InstallJob, error)
}

// Server routes requests to handlers.
type Server struct {
	Deps
	echo *echo.Echo

	consoleMu sync.Mutex
	viewers   map[string]int // console viewers per VM
	sessions  sync.WaitGroup // console sessions being served
}

// WaitConsoles waits up to d for the console sessions being served to end (their hubs were
// closed) so that their ends are audited before the store closes.
func (s *Server) WaitConsoles(d time.Duration) {
	done := make(chan struct{})
	go func() { s.sessions.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// MaxBody bounds every request body; the API has nothing bigger to say.
const MaxBody = 64 << 10

// New builds the router.
func New(d Deps) *Server {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.ConsoleIdle <= 0 {
		d.ConsoleIdle = 30 * time.Minute
	}
	if d.ConsoleViewers <= 0 {
		d.ConsoleViewers = 8
	}
	s := &Server{Deps: d, echo: echo.New(), viewers: map[string]int{}}
	e := s.echo
	e.HideBanner, e.HidePort = true, true
	// Trust no forwarding headers: the address audited and throttled is the peer's own.
	e.IPExtractor = echo.ExtractIPDirect()
	e.HTTPErrorHandler = s.handleError
	e.Use(middleware.RequestIDWithConfig(middleware.RequestIDConfig{Generator: requestID}))
	e.Use(s.logRequests)
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{DisableStackAll: true, LogErrorFunc: s.logPanic}))
	e.Use(securityHeaders)

	e.GET("/healthz", s.healthz)
	e.GET("/metrics", s.promMetrics, s.bearer, operatorOnly)
	s.staticRoutes()
	s.nodeRoutes(e.Group("/v1/node"))
	s.apiRoutes(e.Group("/v1"))
	s.uiRoutes()
	return s
}

// ServeHTTP makes the Server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.echo.ServeHTTP(w, r) }

func (s *Server) healthz(c echo.Context) error {
	if s.Ping != nil {
		if err := s.Ping(c.Request().Context()); err != nil {
			s.Logger.Error("health check: database", "error", err)
			return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "unhealthy", "database": "unreachable"})
		}
	}
	if s.WriteProbe != nil {
		if err := s.WriteProbe(c.Request().Context()); err != nil {
			s.Logger.Error("health check: writes", "error", err)
			_, _, msg := classify(err)
			return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "unhealthy", "database": "reachable", "writes": msg})
		}
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ok", "version": s.Version})
}

// GuestOnly serves, of h, only what a guest calls: its guest-IP registration. It is the
// handler of the listener on the VMs' bridge, where the manager's pages have no business.
func GuestOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
		if r.Method == http.MethodPost && len(parts) == 4 && parts[0] == "v1" && parts[1] == "vms" && parts[3] == "guest-ip" {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"error":{"code":"not_found","message":"only the guest endpoints are served here"}}` + "\n")) //nolint:errcheck
	})
}
