package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/uptrace/bun"

	"hearth/app"
)

// likePattern is a LIKE pattern matching any name containing part (names are lowercase,
// so LIKE's case rules of either dialect do not matter); % _ \ in part match themselves.
func likePattern(part string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(strings.ToLower(part)) + "%"
}

// whereVMs adds q's filters (name, states) to s.
func whereVMs(s *bun.SelectQuery, q app.VMQuery) *bun.SelectQuery {
	if q.Name != "" {
		s = s.Where(`name LIKE ? ESCAPE '\'`, likePattern(q.Name))
	}
	if len(q.States) > 0 {
		s = s.Where("state IN (?)", bun.In(q.States))
	}
	if q.Node != "" {
		s = s.Where("node = ?", q.Node)
	}
	if len(q.Not) > 0 {
		s = s.Where("state NOT IN (?)", bun.In(q.Not))
	}
	return s
}

// QueryVMs returns the page of VMs q selects, in q's order.
func (db *DB) QueryVMs(ctx context.Context, q app.VMQuery) ([]*app.VM, error) {
	var rows []vmRow
	s := whereVMs(db.bun.NewSelect().Model(&rows), q)
	col, newestFirst := "name", false
	if q.Sort == "created" {
		col, newestFirst = "created_at", true
	}
	desc := q.Desc != newestFirst
	if k := q.After; k != nil {
		var v any = k.Name
		if q.Sort == "created" {
			v = k.Created.UTC()
		}
		op := ">"
		if desc {
			op = "<"
		}
		// (col, id) > (v, id), spelled out: row values compare alike in both dialects, but
		// this form uses the index on either.
		s = s.Where(fmt.Sprintf("(%s %s ? OR (%s = ? AND id %s ?))", col, op, col, op), v, v, k.ID)
	}
	dir := " ASC"
	if desc {
		dir = " DESC"
	}
	s = s.OrderExpr(col + dir).OrderExpr("id" + dir)
	if q.Limit > 0 {
		s = s.Limit(int64(q.Limit))
	}
	if q.Offset > 0 {
		s = s.Offset(int64(q.Offset))
	}
	if err := s.Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: list vms: %w", err)
	}
	vms := make([]*app.VM, len(rows))
	for i := range rows {
		vms[i] = rows[i].toVM()
	}
	return vms, nil
}

// CountVMs counts the VMs whose name contains name, by state, in one query.
func (db *DB) CountVMs(ctx context.Context, name string) (map[app.VMState]int, error) {
	var rows []struct {
		State string `bun:"state"`
		N     int    `bun:"n"`
	}
	s := whereVMs(db.bun.NewSelect().Table("vms").Column("state").ColumnExpr("COUNT(*) AS n"), app.VMQuery{Name: name}).Group("state")
	if err := s.Scan(ctx, &rows); err != nil {
		return nil, fmt.Errorf("store: count vms: %w", err)
	}
	out := make(map[app.VMState]int, len(rows))
	for _, r := range rows {
		out[app.VMState(r.State)] = r.N
	}
	return out, nil
}

// RunningVMs returns node's VMs whose hypervisor runs (running or paused), by name; every
// node's for node "". What the collector polls by each round, and only that: id, name,
// state, size, guest IP, agent token, process, driver and node (the definition's files,
// boot arguments, keys and sealed secrets are left empty). Scanned by hand: at 10,000 VMs
// a round, reading the whole rows through the ORM's reflection was a tenth of a core.
func (db *DB) RunningVMs(ctx context.Context, node string) ([]*app.VM, error) {
	q := "SELECT id, name, state, vcpus, memory_mib, guest_ip, guest_ip_source, agent_token, pid, pid_identity, running_driver, hypervisor, node " +
		"FROM vms WHERE state IN (?, ?)"
	args := []any{string(app.VMRunning), string(app.VMPaused)}
	if node != "" {
		q += " AND node = ?"
		args = append(args, node)
	}
	rows, err := db.bun.QueryContext(ctx, q+" ORDER BY name, id", args...)
	if err != nil {
		return nil, fmt.Errorf("store: running vms: %w", err)
	}
	defer rows.Close()
	var out []*app.VM
	for rows.Next() {
		v := &app.VM{}
		var state string
		var ip, source sql.NullString
		if err := rows.Scan(&v.ID, &v.Name, &state, &v.VCPUs, &v.MemoryMiB, &ip, &source, &v.AgentToken, &v.PID, &v.PIDIdentity,
			&v.RunningDriver, &v.Hypervisor, &v.Node); err != nil {
			return nil, fmt.Errorf("store: running vms: %w", err)
		}
		v.State = app.VMState(state)
		if ip.Valid {
			v.GuestIP, v.GuestIPSource = ip.String, app.GuestIPSource(source.String)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: running vms: %w", err)
	}
	return out, nil
}
