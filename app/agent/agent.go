// Package agent is the manager's client of the guest agent: GET /metrics and GET /health
// (guest/api is the contract). The guest is untrusted, so the client dials only the
// address it is given (the VM's registered IP, already checked against the guest-IP
// rules), whatever a URL or a redirect says; follows no redirects; caps answers; times out;
// and reads answers strictly.
package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"hearth/app"
	"hearth/guest/api"
)

// Client talks to agents.
type Client struct {
	http    *http.Client
	port    int
	bodyCap int64

	timeout time.Duration

	mu    sync.Mutex
	conns map[netip.Addr]map[*conn]struct{} // open connections by guest, for Forget
	idle  map[netip.Addr]*kept              // the GETs' kept connection per guest (get.go)
	swept time.Time                         // when idle was last cleared of stale ones
}

// Options configure a Client; zero values mean the defaults.
type Options struct {
	Port    int           // api.DefaultPort
	Timeout time.Duration // 2 s, for the whole request
	BodyCap int64         // 1 MiB
}

type dialTarget struct{}

// New returns a Client.
func New(o Options) *Client {
	if o.Port == 0 {
		o.Port = api.DefaultPort
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.BodyCap <= 0 {
		o.BodyCap = 1 << 20
	}
	c := &Client{port: o.Port, bodyCap: o.BodyCap, timeout: o.Timeout, conns: map[netip.Addr]map[*conn]struct{}{},
		idle: map[netip.Addr]*kept{}, swept: time.Now()}
	// net/http carries only PUT /clock (once per restore); the GETs have get.go's own path.
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			// The guard: whatever the URL says, connect only to the address the caller
			// put in the context, which passed the guest-IP rules.
			want, _ := ctx.Value(dialTarget{}).(netip.AddrPort)
			if !want.IsValid() || addr != want.String() {
				return nil, fmt.Errorf("dial guard: refusing %s", addr)
			}
			d := net.Dialer{Timeout: o.Timeout}
			nc, err := d.DialContext(ctx, "tcp", want.String())
			if err != nil {
				return nil, err
			}
			return c.track(want.Addr(), nc), nil
		},
		MaxIdleConnsPerHost: 1, IdleConnTimeout: 30 * time.Second, ResponseHeaderTimeout: o.Timeout,
		DisableCompression: true,
	}
	c.http = &http.Client{Transport: tr, Timeout: o.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return errors.New("the agent answered with a redirect") }}
	return c
}

// conn is a connection to one guest's agent, known to its Client until it closes.
type conn struct {
	net.Conn
	c      *Client
	ip     netip.Addr
	once   sync.Once
	closed atomic.Bool
}

func (k *conn) Close() error {
	k.closed.Store(true)
	k.once.Do(func() {
		k.c.mu.Lock()
		defer k.c.mu.Unlock()
		if set := k.c.conns[k.ip]; set != nil {
			delete(set, k)
			if len(set) == 0 {
				delete(k.c.conns, k.ip)
			}
		}
	})
	return k.Conn.Close()
}

func (c *Client) track(ip netip.Addr, nc net.Conn) *conn {
	k := &conn{Conn: nc, c: c, ip: ip}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conns[ip] == nil {
		c.conns[ip] = map[*conn]struct{}{}
	}
	c.conns[ip][k] = struct{}{}
	return k
}

// Port is the port agents are asked on.
func (c *Client) Port() int { return c.port }

// Metrics asks the agent at ip for its metrics, presenting token.
func (c *Client) Metrics(ctx context.Context, ip netip.Addr, token string) (Reading, error) {
	body, err := c.get(ctx, ip, api.MetricsPath+"?view="+api.ViewSummary, token) // an older agent answers the whole snapshot
	if err != nil {
		return Reading{}, err
	}
	return ParseMetrics(body)
}

// Health asks the agent at ip whether it is up, and returns its version.
func (c *Client) Health(ctx context.Context, ip netip.Addr) (string, error) {
	body, err := c.get(ctx, ip, api.HealthPath, "")
	if err != nil {
		return "", err
	}
	var h api.Health
	if err := json.Unmarshal(body, &h); err != nil || h.Status != "ok" {
		return "", fmt.Errorf("%s answered %.64q", api.HealthPath, body)
	}
	return CleanVersion(h.Version), nil
}

// Reading is what the manager takes of one answer: the seed document's two figures and the
// version, the time the agent sampled, its page-cache counters and its filesystems.
type Reading struct {
	api.Summary
	Time        time.Time        `json:"time"` // zero when the agent did not say
	PageCache   *api.PageCache   `json:"page_cache"`
	Filesystems []api.Filesystem `json:"filesystems"`
}

// Bounds on what a guest may report: more filesystems are dropped (the first are kept), and
// their names are cleaned and cut to MaxName.
const (
	MaxFilesystems = 32
	MaxName        = 256
)

// ParseMetrics reads the agent's JSON strictly: percentages must be real numbers in
// [0, 100] (JSON has no NaN or Inf, so they fail to decode), memory must be there, counters
// are whole non-negative numbers, a filesystem uses no more than its size; the version and
// every name are made safe, bounded lines.
func ParseMetrics(body []byte) (Reading, error) {
	var r Reading
	if err := json.Unmarshal(body, &r); err != nil {
		return Reading{}, fmt.Errorf("agent answer is not valid JSON: %w", err)
	}
	for name, p := range map[string]*float64{"cpu_usage_percent": r.CPUUsagePercent, "memory_usage_percent": r.MemUsagePercent} {
		if p != nil && (*p < 0 || *p > 100 || *p != *p) {
			return Reading{}, fmt.Errorf("agent's %s %s is not a percentage", name, strconv.FormatFloat(*p, 'g', -1, 64))
		}
	}
	if r.MemUsagePercent == nil {
		return Reading{}, errors.New("agent answer has no memory_usage_percent")
	}
	r.AgentVersion = CleanVersion(r.AgentVersion)
	if len(r.Filesystems) > MaxFilesystems {
		r.Filesystems = r.Filesystems[:MaxFilesystems]
	}
	for i := range r.Filesystems {
		f := &r.Filesystems[i]
		f.Mountpoint, f.Device, f.FSType = app.CleanLine(f.Mountpoint, MaxName), app.CleanLine(f.Device, MaxName), app.CleanLine(f.FSType, MaxName)
		if f.Mountpoint == "" || f.UsedBytes > f.SizeBytes || f.AvailBytes > f.SizeBytes {
			return Reading{}, fmt.Errorf("agent's filesystem %q: used %d and available %d bytes of %d", f.Mountpoint, f.UsedBytes, f.AvailBytes, f.SizeBytes)
		}
	}
	if r.Filesystems == nil {
		r.Filesystems = []api.Filesystem{}
	}
	return r, nil
}

// MaxVersion bounds the version a guest reports.
const MaxVersion = 64

// CleanVersion makes a version a guest chose fit for a Prometheus label and a line of the
// page (see app.CleanLine).
func CleanVersion(v string) string { return app.CleanLine(v, MaxVersion) }

// SetClock sends the agent at ip the manager's time now (PUT /clock, presenting token), as
// the manager does right after restoring the VM from a snapshot.
func (c *Client) SetClock(ctx context.Context, ip netip.Addr, token string) (api.ClockResult, error) {
	var res api.ClockResult
	target := netip.AddrPortFrom(ip, uint16(c.port))
	ctx = context.WithValue(ctx, dialTarget{}, target)
	body, _ := json.Marshal(api.Clock{UnixNano: time.Now().UnixNano()})
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+target.String()+api.ClockPath, bytes.NewReader(body))
	if err != nil {
		return res, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.http.Do(req)
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return res, fmt.Errorf("read agent answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		err := fmt.Errorf("agent answered %s: %s", resp.Status, app.CleanLine(string(b), 200))
		if resp.StatusCode >= 400 && resp.StatusCode < 500 {
			return res, &RefusedError{err}
		}
		return res, err
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return res, fmt.Errorf("agent's clock answer: %w", err)
	}
	return res, nil
}

// RefusedError is an agent's 4xx: asking again gets the same answer.
type RefusedError struct{ err error }

func (e *RefusedError) Error() string { return e.err.Error() }
func (e *RefusedError) Unwrap() error { return e.err }

// Forget closes the client's connections to the guest at ip, kept or in use: after a VM
// is restored from a snapshot its guest's TCP state is the snapshot's, and a connection
// kept open since then is one the guest no longer knows, which only times out. A new run
// of a VM starts with a new connection to its agent. Other guests' connections stay.
func (c *Client) Forget(ip netip.Addr) {
	c.mu.Lock()
	var doomed []*conn
	for k := range c.conns[ip] {
		doomed = append(doomed, k)
	}
	c.mu.Unlock()
	for _, k := range doomed {
		k.Close()
	}
}
