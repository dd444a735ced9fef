package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"hearth/app/config"
)

// TestSecondNodeOnSQLiteRefused: SQLite is one host. A manager started on a data dir as
// node alpha registers there; the same data dir started as another node is refused with
// what to do, and starts again as alpha.
func TestSecondNodeOnSQLiteRefused(t *testing.T) {
	m, _ := startMain(t, map[string]string{"HEARTH_NODE": "alpha"})
	dataDir := m.Config.DataDir
	if nodes, err := m.Nodes.List(t.Context()); err != nil || len(nodes) != 1 || nodes[0].Name != "alpha" || !nodes[0].Self {
		t.Fatalf("nodes: %v %v", nodes, err)
	}
	m.Close()
	cfg, err := config.Load(nil, testEnv(map[string]string{"HEARTH_DATA_DIR": dataDir, "HEARTH_LISTEN": "127.0.0.1:0", "HEARTH_NODE": "beta"}))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	m2, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler), &out)
	if err == nil {
		m2.Close()
		t.Fatal("a second node started on a SQLite database")
	}
	if !strings.Contains(err.Error(), `belongs to node "alpha"`) || !strings.Contains(err.Error(), "--node alpha") || !strings.Contains(err.Error(), "PostgreSQL") {
		t.Errorf("refusal: %v", err)
	}
	startMain(t, map[string]string{"HEARTH_DATA_DIR": dataDir, "HEARTH_NODE": "alpha"})
}
