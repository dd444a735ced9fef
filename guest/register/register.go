// Package register keeps the manager told of this guest's IP: it posts the address of the
// default-route interface to POST {manager}/v1/vms/{id}/guest-ip at start and whenever it
// changes, retrying with capped exponential backoff. It runs beside the metrics server and
// never blocks it.
package register

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"hearth/guest/api"
)

// Registrar registers the guest IP with the manager.
type Registrar struct {
	ManagerURL string
	VMID       string
	Token      string // the VM's registration token
	// Addr returns the address to register; nil means DefaultRouteAddr over /proc.
	Addr       func() (netip.Addr, error)
	Client     *http.Client
	Logger     *slog.Logger
	CheckEvery time.Duration // how often to look for an address change (default 15s)
	MinBackoff time.Duration // first retry delay (default 1s)
	MaxBackoff time.Duration // retry delay cap (default 60s)
}

func (r *Registrar) defaults() {
	if r.Addr == nil {
		r.Addr = func() (netip.Addr, error) { return DefaultRouteAddr("/proc") }
	}
	if r.Client == nil {
		r.Client = &http.Client{Timeout: 10 * time.Second}
	}
	// The token must never follow a redirect to somewhere else.
	r.Client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	if r.CheckEvery == 0 {
		r.CheckEvery = 15 * time.Second
	}
	if r.MinBackoff == 0 {
		r.MinBackoff = time.Second
	}
	if r.MaxBackoff == 0 {
		r.MaxBackoff = time.Minute
	}
}

// Run registers until ctx ends.
func (r *Registrar) Run(ctx context.Context) {
	r.defaults()
	var registered netip.Addr
	backoff := r.MinBackoff
	lastErr := ""
	for {
		wait := r.CheckEvery
		addr, err := r.Addr()
		switch {
		case err != nil:
			err = fmt.Errorf("find guest address: %w", err)
		case addr == registered:
		default:
			err = r.Post(ctx, addr)
			if err == nil {
				r.Logger.Info("registered guest IP", "guest_ip", addr.String(), "manager", r.ManagerURL)
				registered, backoff, lastErr = addr, r.MinBackoff, ""
			}
		}
		if err != nil {
			if msg := err.Error(); msg != lastErr { // say each new problem once, not every retry
				r.Logger.Warn("guest IP registration failed; retrying", "error", err, "retry_in", backoff)
				lastErr = msg
			}
			wait = backoff + rand.N(backoff/4+1) // jitter: many guests booting at once spread out
			backoff = min(2*backoff, r.MaxBackoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// Post registers addr once.
func (r *Registrar) Post(ctx context.Context, addr netip.Addr) error {
	r.defaults()
	body, _ := json.Marshal(api.NewGuestIP(addr.String(), api.SourceAgent))
	u := r.ManagerURL + api.RegisterPath(url.PathEscape(r.VMID))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+r.Token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "hearth-agent")
	resp, err := r.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) //nolint:errcheck // drain for reuse
		return nil
	}
	var e api.ErrorReply
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<10))
	if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
		return fmt.Errorf("manager answered %s: %s", resp.Status, e.Error.Message)
	}
	return errors.New("manager answered " + resp.Status)
}
