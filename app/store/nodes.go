package store

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"hearth/app"
)

type nodeRow struct {
	bun.BaseModel `bun:"table:nodes"`

	Name        string    `bun:"name,pk"`
	URL         string    `bun:"url"`
	CPUs        int       `bun:"cpus"`
	MemoryMiB   int       `bun:"memory_mib"`
	Network     string    `bun:"network"`
	Version     string    `bun:"version"`
	IntervalMs  int64     `bun:"interval_ms"`
	StartedAt   time.Time `bun:"started_at"`
	HeartbeatAt time.Time `bun:"heartbeat_at"`
}

func (r *nodeRow) toNode() *app.Node {
	return &app.Node{Name: r.Name, URL: r.URL, CPUs: r.CPUs, MemoryMiB: r.MemoryMiB, Network: r.Network, Version: r.Version,
		StartedAt: r.StartedAt.UTC(), HeartbeatAt: r.HeartbeatAt.UTC(), Interval: time.Duration(r.IntervalMs) * time.Millisecond}
}

// RegisterNode records n as starting now (its first heartbeat) and gives it the VMs made
// before nodes existed. On SQLite, which is one host, a node of another name already
// recorded is refused: the database is that node's.
func (db *DB) RegisterNode(ctx context.Context, n *app.Node) error {
	return db.inTx(ctx, func(tx bun.Tx) error {
		if err := db.checkNodeName(ctx, tx, n.Name); err != nil {
			return err
		}
		t := now()
		n.StartedAt, n.HeartbeatAt = t, t
		r := nodeRow{Name: n.Name, URL: n.URL, CPUs: n.CPUs, MemoryMiB: n.MemoryMiB, Network: n.Network, Version: n.Version,
			IntervalMs: n.Interval.Milliseconds(), StartedAt: t, HeartbeatAt: t}
		if _, err := tx.NewInsert().Model(&r).On("CONFLICT (name) DO UPDATE").
			Set("url = EXCLUDED.url, cpus = EXCLUDED.cpus, memory_mib = EXCLUDED.memory_mib, network = EXCLUDED.network").
			Set("version = EXCLUDED.version, interval_ms = EXCLUDED.interval_ms, started_at = EXCLUDED.started_at, heartbeat_at = EXCLUDED.heartbeat_at").
			Exec(ctx); err != nil {
			return fmt.Errorf("store: register node: %w", err)
		}
		if _, err := tx.NewUpdate().Model((*vmRow)(nil)).Set("node = ?", n.Name).Where("node = ''").Exec(ctx); err != nil {
			return fmt.Errorf("store: claim the VMs of before nodes: %w", err)
		}
		if _, err := tx.NewUpdate().Model((*imageRow)(nil)).Set("node = ?", n.Name).Where("node = ''").Exec(ctx); err != nil {
			return fmt.Errorf("store: claim the images of before nodes: %w", err)
		}
		return nil
	})
}

// CheckNodeName refuses a node name a SQLite database cannot take: SQLite is one host, so
// its one node is the first that registered. PostgreSQL takes any.
func (db *DB) CheckNodeName(ctx context.Context, name string) error {
	return db.checkNodeName(ctx, db.bun, name)
}

func (db *DB) checkNodeName(ctx context.Context, idb bun.IDB, name string) error {
	if db.dialect.Name != "sqlite" {
		return nil
	}
	var other []nodeRow
	if err := idb.NewSelect().Model(&other).Where("name <> ?", name).Scan(ctx); err != nil {
		return fmt.Errorf("store: read nodes: %w", err)
	}
	if len(other) > 0 {
		return app.Errorf(app.ECONFLICT, "this SQLite database belongs to node %q (SQLite is one host): use --node %s, "+
			"or put several hosts on one PostgreSQL (HEARTH_DATABASE_URL)", other[0].Name, other[0].Name)
	}
	return nil
}

// Heartbeat records that node is up now. ENOTFOUND when its record is gone.
func (db *DB) Heartbeat(ctx context.Context, node string) (time.Time, error) {
	t := now()
	res, err := db.bun.NewUpdate().Model((*nodeRow)(nil)).Set("heartbeat_at = ?", t).Where("name = ?", node).Exec(ctx)
	if err != nil {
		return t, fmt.Errorf("store: heartbeat: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return t, app.Errorf(app.ENOTFOUND, "node %q is not registered", node)
	}
	return t, nil
}

// Nodes lists the nodes by name.
func (db *DB) Nodes(ctx context.Context) ([]*app.Node, error) {
	var rows []nodeRow
	if err := db.bun.NewSelect().Model(&rows).Order("name").Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: list nodes: %w", err)
	}
	out := make([]*app.Node, len(rows))
	for i := range rows {
		out[i] = rows[i].toNode()
	}
	return out, nil
}

// NodeLoad is what a node's VMs take: how many there are, how many run (running or
// paused), and the vCPUs and memory those hold.
type NodeLoad struct {
	VMs, Running     int
	VCPUs, MemoryMiB int
}

// NodeLoads is each node's load, by name.
func (db *DB) NodeLoads(ctx context.Context) (map[string]NodeLoad, error) {
	var rows []struct {
		Node  string `bun:"node"`
		State string `bun:"state"`
		N     int    `bun:"n"`
		CPUs  int    `bun:"cpus"`
		Mem   int    `bun:"mem"`
	}
	if err := db.bun.NewSelect().Model((*vmRow)(nil)).Column("node", "state").ColumnExpr("COUNT(*) AS n").
		ColumnExpr("SUM(vcpus) AS cpus").ColumnExpr("SUM(memory_mib) AS mem").Group("node", "state").Scan(ctx, &rows); err != nil {
		return nil, fmt.Errorf("store: count VMs by node: %w", err)
	}
	out := map[string]NodeLoad{}
	for _, r := range rows {
		l := out[r.Node]
		l.VMs += r.N
		if app.VMState(r.State).Live() || app.VMState(r.State) == app.VMStarting {
			l.Running += r.N
			l.VCPUs += r.CPUs
			l.MemoryMiB += r.Mem
		}
		out[r.Node] = l
	}
	return out, nil
}
