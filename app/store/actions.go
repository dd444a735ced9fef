package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/uptrace/bun"

	"hearth/app"
)

// ActionsChannel is the PostgreSQL channel a queued action is announced on; the payload
// is the name of the node that must carry it out.
const ActionsChannel = "hearth_actions"

type actionRow struct {
	bun.BaseModel `bun:"table:vm_actions"`

	ID         string       `bun:"id,pk"`
	VMID       string       `bun:"vm_id"`
	Node       string       `bun:"node"`
	Action     string       `bun:"action"`
	Actor      string       `bun:"actor"`
	Addr       string       `bun:"addr"`
	State      string       `bun:"state"`
	Error      string       `bun:"error"`
	CreatedAt  time.Time    `bun:"created_at"`
	FinishedAt sql.NullTime `bun:"finished_at"`
}

func (r *actionRow) toAction() *app.VMAction {
	a := &app.VMAction{ID: r.ID, VMID: r.VMID, Node: r.Node, Action: r.Action, Actor: r.Actor, Addr: r.Addr, State: r.State,
		Error: r.Error, CreatedAt: r.CreatedAt.UTC()}
	if r.FinishedAt.Valid {
		a.FinishedAt = r.FinishedAt.Time.UTC()
	}
	return a
}

// QueueAction records an action for a's node to carry out, and e, at once; on PostgreSQL
// the node hears of it when the transaction commits (NOTIFY).
func (db *DB) QueueAction(ctx context.Context, a *app.VMAction, e *app.AuditEntry) error {
	return db.inTx(ctx, func(tx bun.Tx) error {
		a.State, a.CreatedAt = app.ActionQueued, now()
		r := actionRow{ID: a.ID, VMID: a.VMID, Node: a.Node, Action: a.Action, Actor: a.Actor, Addr: a.Addr, State: a.State, CreatedAt: a.CreatedAt}
		if _, err := tx.NewInsert().Model(&r).Exec(ctx); err != nil {
			return fmt.Errorf("store: queue action: %w", err)
		}
		if db.dialect.Name == "pg" {
			if _, err := tx.ExecContext(ctx, "SELECT pg_notify(?, ?)", ActionsChannel, a.Node); err != nil {
				return fmt.Errorf("store: announce action: %w", err)
			}
		}
		return audit(ctx, tx, e)
	})
}

// NextAction claims node's oldest queued action (state running), or returns nil.
func (db *DB) NextAction(ctx context.Context, node string) (*app.VMAction, error) {
	for {
		var r actionRow
		err := db.bun.NewSelect().Model(&r).Where("node = ? AND state = ?", node, app.ActionQueued).Order("created_at", "id").Limit(1).Scan(ctx)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("store: next action: %w", err)
		}
		res, err := db.bun.NewUpdate().Model((*actionRow)(nil)).Set("state = ?", app.ActionRunning).
			Where("id = ? AND state = ?", r.ID, app.ActionQueued).Exec(ctx)
		if err != nil {
			return nil, fmt.Errorf("store: claim action: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			r.State = app.ActionRunning
			return r.toAction(), nil
		}
	}
}

// FinishAction records how an action ended (ActionDone, or ActionFailed with why).
func (db *DB) FinishAction(ctx context.Context, id, state, why string) error {
	_, err := db.bun.NewUpdate().Model((*actionRow)(nil)).Set("state = ?", state).Set("error = ?", why).
		Set("finished_at = ?", now()).Where("id = ?", id).Exec(ctx)
	if err != nil {
		return fmt.Errorf("store: finish action: %w", err)
	}
	return nil
}

// Action returns one action, or ENOTFOUND.
func (db *DB) Action(ctx context.Context, id string) (*app.VMAction, error) {
	var r actionRow
	if err := db.bun.NewSelect().Model(&r).Where("id = ?", id).Scan(ctx); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, app.Errorf(app.ENOTFOUND, "no action %q", id)
		}
		return nil, fmt.Errorf("store: read action: %w", err)
	}
	return r.toAction(), nil
}

// PendingActions are the VM's actions not yet carried out, oldest first.
func (db *DB) PendingActions(ctx context.Context, vmID string) ([]*app.VMAction, error) {
	var rows []actionRow
	if err := db.bun.NewSelect().Model(&rows).Where("vm_id = ? AND state IN (?)", vmID, bun.In([]string{app.ActionQueued, app.ActionRunning})).
		Order("created_at", "id").Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: pending actions: %w", err)
	}
	out := make([]*app.VMAction, len(rows))
	for i := range rows {
		out[i] = rows[i].toAction()
	}
	return out, nil
}

// DeleteFinishedActions removes actions that ended before t (their outcome is in the audit
// log and the VM itself), and says how many.
func (db *DB) DeleteFinishedActions(ctx context.Context, before time.Time) (int64, error) {
	res, err := db.bun.NewDelete().Model((*actionRow)(nil)).Where("state IN (?) AND finished_at < ?",
		bun.In([]string{app.ActionDone, app.ActionFailed}), before.UTC()).Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: delete finished actions: %w", err)
	}
	return res.RowsAffected()
}

// FailRunningActions marks node's actions left running by a crash as failed: whether
// they were carried out is not known, and doing them twice could be wrong.
func (db *DB) FailRunningActions(ctx context.Context, node string) (int, error) {
	res, err := db.bun.NewUpdate().Model((*actionRow)(nil)).Set("state = ?", app.ActionFailed).
		Set("error = ?", "the node restarted while carrying it out; look at the VM and ask again").Set("finished_at = ?", now()).
		Where("node = ? AND state = ?", node, app.ActionRunning).Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: fail interrupted actions: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// Listen calls heard with the payload of every notification on channel until ctx ends,
// on a connection of its own (reconnecting after a failure, once a second). On SQLite,
// which one manager uses, there is nothing to hear: it returns at once.
func (db *DB) Listen(ctx context.Context, channel string, heard func(payload string), failed func(error)) {
	if db.dialect.Name != "pg" {
		return
	}
	for ctx.Err() == nil {
		err := db.listenOnce(ctx, channel, heard)
		if ctx.Err() != nil {
			return
		}
		if failed != nil {
			failed(err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (db *DB) listenOnce(ctx context.Context, channel string, heard func(string)) error {
	conn, err := pgx.Connect(ctx, db.dsn)
	if err != nil {
		return fmt.Errorf("store: listen: connect: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return fmt.Errorf("store: listen: %w", err)
	}
	heard("") // listening now: whatever was queued before is for the caller's sweep
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("store: listen: %w", err)
		}
		heard(n.Payload)
	}
}
