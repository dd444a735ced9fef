package web

import (
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"hearth/app"
	"hearth/app/metrics"
	"hearth/views/pages"
)

// vmsPage is GET /vms: the search form over the list's first (or asked-for) page.
func (s *Server) vmsPage(c echo.Context) error {
	q, list, err := s.vmList(c)
	if err != nil {
		return err
	}
	f := pages.ListForm{Q: q.Name, State: string(q.State), Badge: q.Badge, Sort: q.Sort, Badges: listBadges}
	if q.Desc {
		f.Order = q.order()
	}
	for _, st := range listStates {
		f.States = append(f.States, string(st))
	}
	return renderOK(c, pages.VMs(s.layout(c, "Virtual machines"), f, list))
}

// vmListPart is GET /vms/list: the polled part alone, for the same query and page.
func (s *Server) vmListPart(c echo.Context) error {
	_, list, err := s.vmList(c)
	if err != nil {
		return err
	}
	return renderOK(c, pages.VMListPart(list))
}

// vmList reads the query and the page of the request and renders that page's rows, with
// sparklines for the running VMs on it. A page past the last shows the last.
func (s *Server) vmList(c echo.Context) (listQuery, pages.VMList, error) {
	q, err := parseListQuery(c.QueryParams())
	if err != nil {
		return q, pages.VMList{}, err
	}
	page := 1
	if raw := c.QueryParam("page"); raw != "" {
		if page, err = strconv.Atoi(raw); err != nil || page < 1 || page > 1_000_000 {
			return q, pages.VMList{}, &app.Error{Code: app.EINVALID, Message: "the page is not valid",
				Fields: map[string]string{"page": "must be a whole number from 1"}}
		}
	}
	ctx := c.Request().Context()
	p, err := s.findVMs(ctx, q, (page-1)*pageSize, nil, pageSize)
	if err != nil {
		return q, pages.VMList{}, err
	}
	pagesN := max(1, (p.Total+pageSize-1)/pageSize)
	if page > pagesN { // past the end (VMs were deleted since the link was made)
		page = pagesN
		if p, err = s.findVMs(ctx, q, (page-1)*pageSize, nil, pageSize); err != nil {
			return q, pages.VMList{}, err
		}
	}
	href := func(path string, q listQuery, page int) string {
		v := q.values()
		if page > 1 {
			v.Set("page", strconv.Itoa(page))
		}
		if len(v) == 0 {
			return path
		}
		return path + "?" + v.Encode()
	}
	l := pages.VMList{Poll: href("/vms/list", q, page), Total: p.Total, Page: page, Pages: pagesN,
		Filtered: q.Name != "" || q.State != "" || q.Badge != ""}
	if len(p.VMs) > 0 {
		l.From, l.To = (page-1)*pageSize+1, (page-1)*pageSize+len(p.VMs)
	}
	if page > 1 {
		l.Prev = href("/vms", q, page-1)
	}
	if page < pagesN {
		l.Next = href("/vms", q, page+1)
	}
	all := 0
	for _, n := range p.Counts {
		all += n
	}
	tab := q
	tab.State = ""
	l.Tabs = append(l.Tabs, pages.ListTab{Key: "all", Label: "All", Count: all, Href: href("/vms", tab, 1), Active: q.State == ""})
	for _, st := range listStates {
		tab.State = st
		l.Tabs = append(l.Tabs, pages.ListTab{Key: string(st), Label: string(st), Count: p.Counts[st], Href: href("/vms", tab, 1), Active: q.State == st})
	}
	for _, key := range []string{"name", "cpu", "memory"} {
		o := q
		o.Sort, o.Desc = key, false
		t := pages.ListTab{Key: key, Active: q.Sort == key}
		if t.Active { // clicking the sorted column turns its order round
			o.Desc = !q.Desc
			t.Arrow = map[string]string{"asc": "↑", "desc": "↓"}[q.order()]
		}
		t.Href = href("/vms", o, 1)
		l.Sorts = append(l.Sorts, t)
	}
	now := time.Now()
	states := s.nodeStates(ctx)
	// Other nodes' running VMs: their sparklines from the samples their nodes store.
	var remote []string
	for _, v := range p.VMs {
		if s.Metrics != nil && v.State == app.VMRunning && s.remote(v) {
			remote = append(remote, v.ID)
		}
	}
	var remoteHist map[string][]metrics.Sample
	if len(remote) > 0 {
		if remoteHist, err = s.Metrics.RemoteHistory(ctx, remote, now.Add(-15*time.Minute)); err != nil {
			s.Logger.Warn("read other nodes' samples for the list", "error", err)
		}
	}
	for _, v := range p.VMs {
		r := pages.VMRow{ID: v.ID, Name: v.Name, State: shownState(v, states), VCPUs: v.VCPUs, MemoryMiB: v.MemoryMiB, GuestIP: guestIPView(v, now)}
		if len(states) > 1 {
			r.Node = v.Node
		}
		if s.Metrics != nil && v.State == app.VMRunning {
			hist := s.Metrics.History(v.ID, now.Add(-15*time.Minute))
			if s.remote(v) {
				hist = remoteHist[v.ID]
			}
			stale := 3 * s.Metrics.Interval()
			r.CPU = sparkOf(hist, now, stale, func(x metrics.Sample) *float64 { return x.CPUPercent })
			r.Mem = sparkOf(hist, now, stale, func(x metrics.Sample) *float64 { return x.MemPercent })
		}
		l.Rows = append(l.Rows, r)
	}
	return q, l, nil
}
