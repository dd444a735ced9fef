// Package node is the use case of several hosts on one PostgreSQL: this manager's node
// record and its heartbeat, and the list of nodes with their state (up, or down after
// app.MissedBeats missed heartbeats). SQLite is one host: a second node is refused there.
package node

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"hearth/app"
	"hearth/app/store"
)

// Service keeps this node's record and reads everyone's.
type Service struct {
	DB     *store.DB
	Self   app.Node // Name, URL, CPUs, MemoryMiB, Network, Version, Interval
	Logger *slog.Logger
	// Secret is what nodes present to each other (config.ClusterSecret); "" for none.
	// The database keeps its SHA-256 only, so that a node with another secret is refused.
	Secret string

	peers      atomic.Pointer[map[netip.Addr]string] // the other nodes' addresses (Peers)
	refreshing atomic.Bool                           // a refresh of peers is under way
}

// Peers maps the other nodes' addresses (from their URLs, names resolved) to their names,
// as of the last heartbeat: a guest may never claim one, or the manager would poll
// another manager as its agent.
func (s *Service) Peers() map[netip.Addr]string {
	if p := s.peers.Load(); p != nil {
		return *p
	}
	return nil
}

// refreshPeers reads the other nodes' URLs and keeps their addresses for Peers.
func (s *Service) refreshPeers(ctx context.Context) {
	nodes, err := s.DB.Nodes(ctx)
	if err != nil {
		return
	}
	out := map[netip.Addr]string{}
	for _, n := range nodes {
		if n.Name == s.Self.Name {
			continue
		}
		u, err := url.Parse(n.URL)
		if err != nil || u.Hostname() == "" {
			continue
		}
		if a, err := netip.ParseAddr(u.Hostname()); err == nil {
			out[a.Unmap()] = n.Name
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		addrs, _ := net.DefaultResolver.LookupNetIP(lctx, "ip", u.Hostname())
		cancel()
		for _, a := range addrs {
			out[a.Unmap()] = n.Name
		}
	}
	s.peers.Store(&out)
}

// secretSetting keeps the SHA-256 of the cluster's node secret.
const secretSetting = "cluster_secret_sha256"

// Status is a node as the Nodes page and GET /v1/nodes show it.
type Status struct {
	*app.Node
	State   string // app.NodeUp or app.NodeDown
	VMs     int    // VMs that belong to it
	Running int    // of those, running or paused
	// AllocatedMiB and AllocatedVCPUs are what its running (and starting, paused) VMs hold.
	AllocatedMiB, AllocatedVCPUs int
	Self                         bool // this manager
}

// FreeMiB is the node's memory its running VMs leave (a node that could not read its
// memory counts as having plenty).
func (st Status) FreeMiB() int {
	if st.MemoryMiB == 0 {
		return math.MaxInt32 - st.AllocatedMiB
	}
	return st.MemoryMiB - st.AllocatedMiB
}

// Place chooses the node a new VM of memoryMiB goes to: want, if given (it must be up and
// have the room), else the up node with the most free memory that fits (ties: by name)
// among those that have image ready, when the VM is made from one. The error names the
// nodes and what each has free. With no node holding the image, it is this node: its
// refusal names the image.
func (s *Service) Place(ctx context.Context, want string, memoryMiB int, image string) (string, error) {
	list, err := s.List(ctx)
	if err != nil {
		return "", err
	}
	var have map[string]bool
	if image != "" && want == "" {
		on, err := s.DB.ImageNodes(ctx, image)
		if err != nil {
			return "", err
		}
		have = map[string]bool{}
		for _, im := range on {
			if im.State == app.ImageReady {
				have[im.Node] = true
			}
		}
		if len(have) == 0 {
			return s.Self.Name, nil
		}
	}
	var best *Status
	var seen []string
	for i := range list {
		n := &list[i]
		desc := fmt.Sprintf("%s (%s, %d MiB free)", n.Name, n.State, n.FreeMiB())
		if have != nil && !have[n.Name] {
			desc = fmt.Sprintf("%s (without image %s)", n.Name, image)
		}
		seen = append(seen, desc)
		if (want != "" && n.Name != want) || (have != nil && !have[n.Name]) {
			continue
		}
		if want != "" {
			switch {
			case n.State != app.NodeUp:
				return "", app.Errorf(app.EUNAVAILABLE, "node %s is down: a VM cannot be placed there now", want)
			case n.FreeMiB() < memoryMiB:
				return "", app.Errorf(app.EINVALID, "node %s has %d MiB free, and the VM needs %d MiB", want, n.FreeMiB(), memoryMiB)
			}
			return want, nil
		}
		if n.State == app.NodeUp && n.FreeMiB() >= memoryMiB && (best == nil || n.FreeMiB() > best.FreeMiB()) {
			best = n
		}
	}
	if want != "" {
		return "", app.Errorf(app.EINVALID, "there is no node named %q; the nodes: %s", want, strings.Join(seen, ", "))
	}
	if best == nil {
		return "", app.Errorf(app.EINVALID, "no up node has %d MiB free for this VM: %s", memoryMiB, strings.Join(seen, ", "))
	}
	return best.Name, nil
}

// Register records this node as up and gives it the VMs made before nodes existed. A node
// whose secret differs from the one the cluster's first node recorded is refused.
func (s *Service) Register(ctx context.Context) error {
	if s.Secret != "" {
		sum := sha256.Sum256([]byte(s.Secret))
		mine := hex.EncodeToString(sum[:])
		kept, err := s.DB.Setting(ctx, secretSetting)
		if err != nil {
			return err
		}
		switch {
		case kept == "":
			if err := s.DB.SetSetting(ctx, secretSetting, mine); err != nil {
				return err
			}
		case subtle.ConstantTimeCompare([]byte(kept), []byte(mine)) != 1:
			return app.Errorf(app.EFORBIDDEN, "this node's cluster secret (HEARTH_CLUSTER_SECRET_FILE) is not the one the other nodes use: give every node the same file")
		}
	}
	if err := s.DB.RegisterNode(ctx, &s.Self); err != nil {
		return err
	}
	s.refreshPeers(ctx)
	return nil
}

// Authorized reports whether presented is the cluster's node secret (constant time, over
// hashes, so its length does not show); never without a secret.
func (s *Service) Authorized(presented string) bool {
	if s.Secret == "" || presented == "" {
		return false
	}
	a, b := sha256.Sum256([]byte(presented)), sha256.Sum256([]byte(s.Secret))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// Peer is where to reach node name for something only it can do (its VMs' consoles), and
// the credential to present; an error says why it cannot be reached.
func (s *Service) Peer(ctx context.Context, name string) (url, credential string, err error) {
	if s.Secret == "" {
		return "", "", app.Errorf(app.EUNAVAILABLE, "node %s cannot be reached from this node: the nodes share no secret (set the same HEARTH_CLUSTER_SECRET_FILE on every node)", name)
	}
	nodes, err := s.DB.Nodes(ctx)
	if err != nil {
		return "", "", err
	}
	for _, n := range nodes {
		if n.Name != name {
			continue
		}
		if n.StateAt(time.Now()) == app.NodeDown {
			return "", "", app.Errorf(app.EUNAVAILABLE, "node %s is down (no heartbeat for %s)", name, time.Since(n.HeartbeatAt).Round(time.Second))
		}
		return n.URL, "Node " + s.Secret, nil
	}
	return "", "", app.Errorf(app.EUNAVAILABLE, "node %s is not registered", name)
}

// Run heartbeats every Interval until ctx ends. A failed heartbeat is logged; the next
// one tries again (after three misses the others see this node down).
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(s.Self.Interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		hctx, cancel := context.WithTimeout(ctx, s.Self.Interval)
		at, err := s.DB.Heartbeat(hctx, s.Self.Name)
		cancel()
		switch {
		case app.ErrorCode(err) == app.ENOTFOUND: // someone removed the record: make it again
			err = s.Register(ctx)
		case err == nil:
			s.Self.HeartbeatAt = at
		}
		if s.refreshing.CompareAndSwap(false, true) { // names may resolve slowly: never in the heartbeat's way
			go func() {
				defer s.refreshing.Store(false)
				s.refreshPeers(ctx)
			}()
		}
		if err != nil && !failing && ctx.Err() == nil {
			s.logger().Warn("node heartbeat failed; the other nodes see this one down after three", "node", s.Self.Name, "error", err)
		} else if err == nil && failing {
			s.logger().Info("node heartbeat works again", "node", s.Self.Name)
		}
		failing = err != nil
	}
}

// List is every node with its state now and its VMs.
func (s *Service) List(ctx context.Context) ([]Status, error) {
	nodes, err := s.DB.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	loads, err := s.DB.NodeLoads(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := make([]Status, len(nodes))
	for i, n := range nodes {
		l := loads[n.Name]
		out[i] = Status{Node: n, State: n.StateAt(now), VMs: l.VMs, Running: l.Running, AllocatedMiB: l.MemoryMiB,
			AllocatedVCPUs: l.VCPUs, Self: n.Name == s.Self.Name}
	}
	return out, nil
}

// States maps each node's name to its state now, for the VM pages' "node down".
func (s *Service) States(ctx context.Context) (map[string]string, error) {
	nodes, err := s.DB.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := make(map[string]string, len(nodes))
	for _, n := range nodes {
		out[n.Name] = n.StateAt(now)
	}
	return out, nil
}

// OneHost reports whether the database is SQLite, which serves one host.
func (s *Service) OneHost() bool { return s.DB.Dialect() == "sqlite" }

// Name is this node's name.
func (s *Service) Name() string { return s.Self.Name }

func (s *Service) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}
