// Package api is the wire contract between the guest agent and the manager, written once
// and imported by both sides: the agent's port and paths, the shapes of its answers
// (GET /metrics as JSON, GET /health), and the body a guest posts to register its IP.
// It depends on nothing but the standard library, so the agent imports nothing of the
// manager by importing it.
package api

import (
	"encoding/json"
	"fmt"
)

// DefaultPort is where the agent listens unless configured otherwise.
const DefaultPort = 8080

// The agent's paths.
const (
	MetricsPath = "/metrics" // JSON Metrics; Prometheus text when asked
	HealthPath  = "/health"  // Health, never authenticated
	// ClockPath is PUT by the manager right after it restored the VM from a snapshot: the
	// guest's clock stood still in the snapshot and is that far behind. Body Clock, answer
	// ClockResult; only with the agent's token (an agent without one refuses it).
	ClockPath = "/clock"
)

// Clock is PUT /clock's body: the manager's time now.
type Clock struct {
	UnixNano int64 `json:"unix_nano"`
}

// ClockResult says what the agent did with a Clock.
type ClockResult struct {
	Stepped bool    `json:"stepped"`        // the clock was off by more than ClockTolerance
	Seconds float64 `json:"offset_seconds"` // how far behind (positive) or ahead the guest was
}

// ClockTolerance is the offset below which the agent leaves the clock alone (NTP, if the
// guest runs it, slews that much away by itself).
const ClockTolerance = 0.5

// Health is GET /health's answer.
type Health struct {
	Status        string  `json:"status"` // "ok"
	Version       string  `json:"version"`
	UptimeSeconds float64 `json:"uptime_seconds"`
}

// RegisterPath is the manager's path where a guest registers its IP.
func RegisterPath(vmID string) string { return "/v1/vms/" + vmID + "/guest-ip" }

// Registration sources a guest may name.
const (
	SourceCallback = "callback" // cloud-init's first-boot callback
	SourceAgent    = "agent"    // the agent's own registration
)

// GuestIP is the body of POST /v1/vms/{id}/guest-ip: {"guest_ip": "192.168.1.100"}, null
// or "" clearing it; guests may add "source". It is the seed document's contract.
type GuestIP struct {
	GuestIP json.RawMessage `json:"guest_ip"`
	Source  string          `json:"source,omitempty"`
}

// NewGuestIP is the body that registers ip from source.
func NewGuestIP(ip, source string) GuestIP {
	b, _ := json.Marshal(ip)
	return GuestIP{GuestIP: b, Source: source}
}

// ErrMissingGuestIP: the body has no guest_ip at all.
var ErrMissingGuestIP = fmt.Errorf(`guest_ip is required (a string; null or "" clears it)`)

// IP returns the address to set, "" to clear; an error when guest_ip is missing or not a
// string or null.
func (b GuestIP) IP() (string, error) {
	if len(b.GuestIP) == 0 {
		return "", ErrMissingGuestIP
	}
	if string(b.GuestIP) == "null" {
		return "", nil
	}
	var ip string
	if err := json.Unmarshal(b.GuestIP, &ip); err != nil {
		return "", fmt.Errorf("guest_ip must be a string or null")
	}
	return ip, nil
}

// ErrorReply is how the manager's API says what went wrong.
type ErrorReply struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Summary is the part of GET /metrics every manager reads: the seed document's two fields
// and the agent's version. Decoding into it skips the rest of the Snapshot.
type Summary struct {
	CPUUsagePercent *float64 `json:"cpu_usage_percent"` // null until the agent has two readings
	MemUsagePercent *float64 `json:"memory_usage_percent"`
	AgentVersion    string   `json:"agent_version"`
}
