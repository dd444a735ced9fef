package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"

	"hearth/app"
)

// agentReply is what the collector takes from the agent's JSON: the seed document's two
// fields, and the version. Everything else in the answer is ignored.
type agentReply struct {
	CPU     *float64 `json:"cpu_usage_percent"`
	Mem     *float64 `json:"memory_usage_percent"`
	Version string   `json:"agent_version"`
}

// agentClient polls agents. It dials only the address it is told (the VM's registered
// guest IP, checked against the guest-IP rules before), follows no redirects, caps the body
// and times out.
type agentClient struct {
	http    *http.Client
	port    int
	bodyCap int64
}

type dialTarget struct{}

func newAgentClient(port int, timeout time.Duration, bodyCap int64) *agentClient {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			// The guard: whatever the URL says, connect only to the address the poller
			// put in the context, which passed the guest-IP rules.
			want, _ := ctx.Value(dialTarget{}).(netip.AddrPort)
			if !want.IsValid() || addr != want.String() {
				return nil, fmt.Errorf("dial guard: refusing %s", addr)
			}
			d := net.Dialer{Timeout: timeout}
			return d.DialContext(ctx, "tcp", want.String())
		},
		MaxIdleConnsPerHost: 1, IdleConnTimeout: 30 * time.Second, ResponseHeaderTimeout: timeout,
		DisableCompression: true,
	}
	return &agentClient{port: port, bodyCap: bodyCap, http: &http.Client{Transport: tr, Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return errors.New("the agent answered with a redirect") }}}
}

// fetch asks the agent at ip for its metrics.
func (c *agentClient) fetch(ctx context.Context, ip netip.Addr, token string) (agentReply, error) {
	target := netip.AddrPortFrom(ip, uint16(c.port))
	ctx = context.WithValue(ctx, dialTarget{}, target)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+target.String()+"/metrics", nil)
	if err != nil {
		return agentReply{}, err
	}
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return agentReply{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096)) //nolint:errcheck
		return agentReply{}, fmt.Errorf("agent answered %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.bodyCap+1))
	if err != nil {
		return agentReply{}, fmt.Errorf("read agent answer: %w", err)
	}
	if int64(len(body)) > c.bodyCap {
		return agentReply{}, fmt.Errorf("agent answer larger than %d bytes", c.bodyCap)
	}
	return parseAgent(body)
}

// parseAgent reads the agent's JSON strictly: percentages must be real numbers in [0, 100]
// (JSON has no NaN or Inf, so they fail to decode), the version is bounded.
func parseAgent(body []byte) (agentReply, error) {
	var r agentReply
	if err := json.Unmarshal(body, &r); err != nil {
		return agentReply{}, fmt.Errorf("agent answer is not valid JSON: %w", err)
	}
	for name, p := range map[string]*float64{"cpu_usage_percent": r.CPU, "memory_usage_percent": r.Mem} {
		if p != nil && (*p < 0 || *p > 100 || *p != *p) {
			return agentReply{}, fmt.Errorf("agent's %s %s is not a percentage", name, strconv.FormatFloat(*p, 'g', -1, 64))
		}
	}
	if r.Mem == nil {
		return agentReply{}, errors.New("agent answer has no memory_usage_percent")
	}
	r.Version = labelValue(r.Version)
	return r, nil
}

// maxLabel bounds a label value a guest chose (its agent version).
const maxLabel = 64

// labelValue makes a text from a guest fit to be a Prometheus label value and a line of the
// page: valid UTF-8 (a cut never splits a character, or the series would vanish from
// /metrics), no control characters, at most maxLabel bytes.
func labelValue(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	return app.Clip(s, maxLabel)
}
