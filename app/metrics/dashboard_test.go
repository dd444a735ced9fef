package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestGrafanaDashboard keeps docs/grafana-dashboard.json honest: it parses, and every
// hearth_* series it queries is one the manager exports.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("../../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil || len(d.Panels) == 0 {
		t.Fatalf("dashboard: %v (%d panels)", err, len(d.Panels))
	}
	exported := map[string]bool{}
	descs := make(chan *prometheus.Desc, 64)
	promVMs{}.Describe(descs)
	close(descs)
	for desc := range descs {
		m := regexp.MustCompile(`fqName: "([a-z_]+)"`).FindStringSubmatch(desc.String())
		exported[m[1]] = true
	}
	names := regexp.MustCompile(`hearth_[a-z_]+`)
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, n := range names.FindAllString(tg.Expr, -1) {
				if !exported[n] {
					t.Errorf("panel %q queries %s, which the manager does not export (%s)", p.Title, n, strings.Join(keys(exported), ", "))
				}
			}
		}
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
