package web

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"hearth/app"
	"hearth/app/metrics"
	"hearth/guest/api"
)

// vmMetricsJSON is GET /v1/vms/{id}/metrics: the latest sample and the badge's state.
type vmMetricsJSON struct {
	metrics.Sample
	Time       *time.Time `json:"time"` // null before the run's first sample
	Status     string     `json:"status"`
	AgeSeconds *float64   `json:"age_seconds"`
	Why        string     `json:"why,omitempty"`
	// The agent's cumulative page-cache counters and its filesystems, from its last answer in
	// this run (null and [] before it answered).
	PageCache   *api.PageCache   `json:"page_cache"`
	Filesystems []api.Filesystem `json:"filesystems"`
	// Node is set when another node polls the VM: the figures are its newest stored sample
	// (page cache and filesystems stay on that node).
	Node string `json:"node,omitempty"`
}

func (s *Server) apiVMMetrics(c echo.Context) error {
	if s.Metrics == nil {
		return app.Errorf(app.EUNAVAILABLE, "this manager collects no metrics")
	}
	v, err := s.VMs.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	now := time.Now()
	if s.remote(v) { // another node polls it: its newest sample in the database
		st, sample, ok := s.Metrics.Remote(c.Request().Context(), v, now)
		out := vmMetricsJSON{Status: st.State, Why: st.Why, Filesystems: []api.Filesystem{}, Node: v.Node}
		if ok {
			out.Sample, out.Time = sample, &sample.Time
			age := now.Sub(sample.Time).Seconds()
			out.AgeSeconds = &age
		}
		return c.JSON(http.StatusOK, out)
	}
	st := s.Metrics.StatusOf(v, now)
	out := vmMetricsJSON{Status: st.State, Why: st.Why, PageCache: s.Metrics.GuestIO(v), Filesystems: []api.Filesystem{}}
	if fss, _ := s.Metrics.Filesystems(v); fss != nil {
		out.Filesystems = fss
	}
	if sample, ok := s.Metrics.Latest(v); ok {
		out.Sample = sample
		out.Time = &sample.Time
		age := now.Sub(sample.Time).Seconds()
		out.AgeSeconds = &age
	}
	return c.JSON(http.StatusOK, out)
}

// promMetrics is the manager's Prometheus endpoint (bearer token, as the API).
func (s *Server) promMetrics(c echo.Context) error {
	if s.Metrics == nil {
		return app.Errorf(app.EUNAVAILABLE, "this manager collects no metrics")
	}
	promhttp.HandlerFor(s.Metrics.Registry(), promhttp.HandlerOpts{}).ServeHTTP(c.Response(), c.Request())
	return nil
}
