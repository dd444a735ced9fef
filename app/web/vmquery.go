package web

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"hearth/app"
	"hearth/app/metrics"
)

// The VM list's filters and orders, as the page's form and the API's parameters spell them.
var (
	listStates = []app.VMState{app.VMDefined, app.VMStarting, app.VMRunning, app.VMPaused, app.VMStopping, app.VMStopped, app.VMFailed}
	listBadges = []string{metrics.StatusLive, metrics.StatusHost, metrics.StatusStale, metrics.StatusWaiting, metrics.StatusPaused, metrics.StatusStopped}
	listSorts  = []string{"name", "cpu", "memory", "created"}
)

const (
	pageSize    = 50  // rows per page of the list
	maxAPILimit = 500 // the largest page GET /v1/vms gives
	maxNameLen  = 63  // a search longer than any name matches nothing anyway
)

// listQuery is what the VM list shows: a part of the name, a state, a badge, an order.
type listQuery struct {
	Name  string
	State app.VMState // "" every state
	Badge string      // "" every badge
	Sort  string      // name, cpu, memory, created
	Desc  bool        // against the sort's natural order (A→Z; busiest, newest first)
}

// parseListQuery reads q, state, badge, sort and order; a value it does not know is an
// EINVALID naming the parameter and what it takes.
func parseListQuery(v url.Values) (listQuery, error) {
	q := listQuery{Name: strings.TrimSpace(v.Get("q")), State: app.VMState(v.Get("state")), Badge: v.Get("badge"), Sort: v.Get("sort")}
	fields := map[string]string{}
	if len(q.Name) > maxNameLen {
		fields["q"] = "must be at most 63 characters (a VM name is no longer)"
	}
	if q.State != "" && !slices.Contains(listStates, q.State) {
		fields["state"] = "must be one of defined, starting, running, stopping, stopped, failed"
	}
	if q.Badge != "" && !slices.Contains(listBadges, q.Badge) {
		fields["badge"] = "must be one of live, host, stale, waiting, stopped"
	}
	if q.Sort == "" {
		q.Sort = "name"
	} else if !slices.Contains(listSorts, q.Sort) {
		fields["sort"] = "must be one of name, cpu, memory, created"
	}
	switch o := v.Get("order"); o {
	case "":
	case "asc", "desc":
		// name reads A→Z naturally; cpu, memory and created busiest or newest first.
		q.Desc = (o == "desc") == (q.Sort == "name")
	default:
		fields["order"] = "must be asc or desc"
	}
	if len(fields) > 0 {
		return q, &app.Error{Code: app.EINVALID, Message: "the list query is not valid", Fields: fields}
	}
	return q, nil
}

// order is the direction the query shows, as the order parameter spells it.
func (q listQuery) order() string {
	if q.Desc == (q.Sort == "name") {
		return "desc"
	}
	return "asc"
}

// values is q as URL parameters, defaults left out, so links stay short.
func (q listQuery) values() url.Values {
	v := url.Values{}
	if q.Name != "" {
		v.Set("q", q.Name)
	}
	if q.State != "" {
		v.Set("state", string(q.State))
	}
	if q.Badge != "" {
		v.Set("badge", q.Badge)
	}
	if q.Sort != "name" {
		v.Set("sort", q.Sort)
	}
	if q.Desc {
		v.Set("order", q.order())
	}
	return v
}

// inMemory says whether the order or the filter needs the collector's figures: only
// running VMs have them, so the query reads those and sorts or filters them here.
func (q listQuery) inMemory() bool {
	return q.Sort == "cpu" || q.Sort == "memory" || (q.Badge != "" && q.Badge != metrics.StatusStopped)
}

// vmPage is one page of the list.
type vmPage struct {
	VMs    []*app.VM
	Total  int                 // VMs the query selects, over every page
	Counts map[app.VMState]int // VMs whose name matches, by state (the tabs)
	More   bool                // another page follows
	Last   app.VMKey           // the last VM's key (a cursor from here continues)
}

// findVMs returns the page of q starting at offset (or after a key, for name and created
// orders), at most limit VMs.
func (s *Server) findVMs(ctx context.Context, q listQuery, offset int, after *app.VMKey, limit int) (vmPage, error) {
	counts, err := s.VMs.Count(ctx, q.Name)
	if err != nil {
		return vmPage{}, err
	}
	p := vmPage{Counts: counts}
	// Which states the query can select: its state filter, narrowed by a badge (only
	// running VMs have one but "stopped").
	sq := app.VMQuery{Name: q.Name, Sort: q.Sort, Desc: q.Desc}
	// A paused VM's badge is "paused", whatever its figures: that badge is its state.
	paused := q.Badge == metrics.StatusPaused
	runningOnly := q.Badge != "" && q.Badge != metrics.StatusStopped && !paused
	switch {
	case q.Badge == metrics.StatusStopped && q.State.Live(), runningOnly && q.State != "" && q.State != app.VMRunning,
		paused && q.State != "" && q.State != app.VMPaused:
		return p, nil // nothing can match both
	case q.State != "":
		sq.States = []app.VMState{q.State}
	case paused:
		sq.States = []app.VMState{app.VMPaused}
	case runningOnly:
		sq.States = []app.VMState{app.VMRunning}
	case q.Badge == metrics.StatusStopped:
		sq.Not = []app.VMState{app.VMRunning, app.VMPaused}
	}
	for st, n := range counts {
		if (len(sq.States) == 0 || slices.Contains(sq.States, st)) && !slices.Contains(sq.Not, st) {
			p.Total += n
		}
	}
	if !q.inMemory() {
		sq.After, sq.Offset, sq.Limit = after, offset, limit+1
		vms, err := s.VMs.Query(ctx, sq)
		if err != nil {
			return p, err
		}
		return p.cut(vms, limit, q.Sort), nil
	}

	// The running VMs the query selects, with their figures, filtered and sorted here.
	var running []*app.VM
	if len(sq.States) == 0 && !slices.Contains(sq.Not, app.VMRunning) || slices.Contains(sq.States, app.VMRunning) {
		if running, err = s.VMs.Query(ctx, app.VMQuery{Name: q.Name, States: []app.VMState{app.VMRunning}, Sort: q.Sort, Desc: q.Desc}); err != nil {
			return p, err
		}
	}
	now := time.Now()
	var figs map[string]listFigure
	if runningOnly || q.Sort == "cpu" || q.Sort == "memory" {
		figs = s.listFigures(ctx, running, now)
	}
	if runningOnly {
		running = slices.DeleteFunc(running, func(v *app.VM) bool { return figs[v.ID].badge != q.Badge })
		p.Total = len(running)
	}
	if q.Sort == "cpu" || q.Sort == "memory" {
		sortByFigure(running, figs, q)
	}
	var vms []*app.VM
	if offset < len(running) {
		vms = running[offset:min(len(running), offset+limit+1)]
	}
	// Then the others, which have no figures: by name, from the database.
	if rest := limit + 1 - len(vms); rest > 0 && !runningOnly && (q.State == "" || q.State != app.VMRunning) {
		others := sq
		others.Sort, others.Desc, others.Limit, others.Offset = "name", false, rest, max(0, offset-len(running))
		if q.State == "" {
			others.Not = append(others.Not, app.VMRunning)
		}
		more, err := s.VMs.Query(ctx, others)
		if err != nil {
			return p, err
		}
		vms = append(vms, more...)
	}
	return p.cut(vms, limit, q.Sort), nil
}

// cut keeps the first limit of vms (one more was asked for, to tell whether more follow).
func (p vmPage) cut(vms []*app.VM, limit int, sort string) vmPage {
	if len(vms) > limit {
		p.More, vms = true, vms[:limit]
	}
	p.VMs = vms
	if len(vms) > 0 {
		p.Last = app.KeyOf(vms[len(vms)-1], sort)
	}
	return p
}

// listFigure is a running VM's badge and latest CPU and memory shares, as the list
// filters and sorts by them.
type listFigure struct {
	badge    string
	cpu, mem *float64
}

// listFigures are the VMs' figures: this node's from its collector, other nodes' from the
// samples those nodes store each round (one query for all of them).
func (s *Server) listFigures(ctx context.Context, vms []*app.VM, now time.Time) map[string]listFigure {
	out := make(map[string]listFigure, len(vms))
	var remote []*app.VM
	for _, v := range vms {
		switch {
		case s.Metrics == nil:
			b := metrics.StatusStopped
			if v.State == app.VMPaused {
				b = metrics.StatusPaused
			} else if v.State == app.VMRunning {
				b = metrics.StatusWaiting
			}
			out[v.ID] = listFigure{badge: b}
		case s.remote(v):
			remote = append(remote, v)
		default:
			f := listFigure{badge: s.Metrics.StatusOf(v, now).State}
			if x, ok := s.Metrics.Latest(v); ok {
				f.cpu, f.mem = x.CPUPercent, x.MemPercent
			}
			out[v.ID] = f
		}
	}
	if len(remote) > 0 {
		figs, err := s.Metrics.RemoteFigures(ctx, remote, now)
		if err != nil {
			s.Logger.Warn("read other nodes' samples for the list", "error", err)
		}
		for _, v := range remote {
			rf, ok := figs[v.ID]
			f := listFigure{badge: metrics.StatusWaiting}
			if ok {
				f.badge = rf.Status.State
				if rf.Has {
					f.cpu, f.mem = rf.Sample.CPUPercent, rf.Sample.MemPercent
				}
			}
			out[v.ID] = f
		}
	}
	return out
}

// sortByFigure orders running VMs by their current CPU or memory share, busiest first
// (Desc: idlest first); VMs without the figure follow, by name.
func sortByFigure(vms []*app.VM, figs map[string]listFigure, q listQuery) {
	fig := make(map[string]float64, len(vms))
	for _, v := range vms {
		f := figs[v.ID].cpu
		if q.Sort == "memory" {
			f = figs[v.ID].mem
		}
		if f != nil {
			fig[v.ID] = *f
		}
	}
	slices.SortStableFunc(vms, func(a, b *app.VM) int {
		fa, oka := fig[a.ID]
		fb, okb := fig[b.ID]
		switch {
		case oka && okb && fa != fb:
			if q.Desc {
				return cmp.Compare(fa, fb)
			}
			return cmp.Compare(fb, fa)
		case oka != okb:
			if oka {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Name, b.Name)
	})
}

// cursor is where the next page of GET /v1/vms starts: after a key (name and created
// orders, stable while VMs come and go) or at an offset (orders by figures, which change
// between polls anyway), for one query only.
type cursor struct {
	Query  string     `json:"q"` // hash of the query it continues
	After  *app.VMKey `json:"a,omitempty"`
	Offset int        `json:"o,omitempty"`
}

func (q listQuery) hash() string {
	h := sha256.Sum256([]byte(q.values().Encode() + "&sort=" + q.Sort))
	return hex.EncodeToString(h[:8])
}

func (c cursor) encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

// parseCursor reads a cursor of q; one of another query, or not a cursor, is EINVALID.
func parseCursor(raw string, q listQuery) (cursor, error) {
	bad := &app.Error{Code: app.EINVALID, Message: "the cursor is not valid", Fields: map[string]string{"cursor": "must be a next_cursor this API returned"}}
	var c cursor
	b, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil || len(raw) > 1024 || json.Unmarshal(b, &c) != nil || c.Offset < 0 {
		return c, bad
	}
	if c.Query != q.hash() {
		bad.Fields["cursor"] = "belongs to another query: pass the same q, state, badge, sort and order as the page it came from"
		return c, bad
	}
	if (c.After != nil) == q.inMemory() || (c.After != nil && c.After.ID == "") {
		return c, bad
	}
	return c, nil
}

// parseLimit reads GET /v1/vms's limit: 1–500, default 50.
func parseLimit(raw string) (int, error) {
	if raw == "" {
		return pageSize, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > maxAPILimit {
		return 0, &app.Error{Code: app.EINVALID, Message: "the limit is not valid", Fields: map[string]string{"limit": "must be a whole number from 1 to 500"}}
	}
	return n, nil
}
