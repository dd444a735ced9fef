// Package server is hearth-agent's HTTP side: GET /metrics (JSON, or Prometheus text when
// asked), GET /health, and PUT /clock (the manager, after restoring a snapshot). Scrapes only read the sampler's latest snapshot, so they are
// cheap and cannot make the guest do more work by being frequent.
package server

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"hearth/guest/api"
	"hearth/guest/collect"
)

// Options configure the handler.
type Options struct {
	Token       string // bearer token for /metrics; "" leaves it open
	Version     string
	MaxInFlight int // concurrent requests served at once; more get 503 (default 16)
	Logger      *slog.Logger
}

type handler struct {
	opts     Options
	sampler  *collect.Sampler
	started  time.Time
	tokenSum [32]byte
	slots    chan struct{}
}

// New returns the agent's HTTP handler.
func New(s *collect.Sampler, opts Options) http.Handler {
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 16
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{opts: opts, sampler: s, started: time.Now(), tokenSum: sha256.Sum256([]byte(opts.Token)),
		slots: make(chan struct{}, opts.MaxInFlight)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+api.MetricsPath, h.metrics)
	mux.HandleFunc("GET "+api.HealthPath, h.health)
	mux.HandleFunc("PUT "+api.ClockPath, h.clock)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == api.ClockPath {
			w.Header().Set("Allow", "PUT")
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
			return
		}
		if r.URL.Path == api.MetricsPath || r.URL.Path == api.HealthPath {
			w.Header().Set("Allow", "GET, HEAD")
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
			return
		}
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found; try GET /metrics or GET /health"})
	})
	return h.limit(mux)
}

// limit serves at most MaxInFlight requests at once and refuses the rest at once, so a
// flood cannot pile up goroutines in a small guest.
func (h *handler) limit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case h.slots <- struct{}{}:
			defer func() { <-h.slots }()
			next.ServeHTTP(w, r)
		default:
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "busy"})
		}
	})
}

// authorized compares the bearer token in constant time (over fixed-length hashes, so not
// even the token's length leaks).
func (h *handler) authorized(r *http.Request) bool {
	if h.opts.Token == "" {
		return true
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(sum[:], h.tokenSum[:]) == 1
}

func (h *handler) metrics(w http.ResponseWriter, r *http.Request) {
	if !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="hearth-agent"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong bearer token"})
		return
	}
	snap := h.sampler.Latest()
	if snap == nil {
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "no sample yet; the agent is starting"})
		return
	}
	if wantsPrometheus(r) {
		b := bufs.Get().(*bytes.Buffer)
		b.Reset()
		writeExposition(b, snap, h.opts.Version)
		w.Header().Set("Content-Type", promContentType)
		w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
		w.Write(b.Bytes()) //nolint:errcheck // the client went away
		if b.Cap() <= 1<<20 {
			bufs.Put(b) // a huge one-off (thousands of interfaces) is left to the GC
		}
		return
	}
	if r.URL.Query().Get("view") == api.ViewSummary { // what the manager polls for
		writeJSON(w, http.StatusOK, snap.Summary())
		return
	}
	writeJSON(w, http.StatusOK, snap)
}

func (h *handler) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, api.Health{Status: "ok", Version: h.opts.Version, UptimeSeconds: time.Since(h.started).Seconds()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) //nolint:errcheck // the client went away; nothing to do
}
