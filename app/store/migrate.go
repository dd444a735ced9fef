package store

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"text/template"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"

	"hearth/migrations"
)

// Migrations are applied by the store itself, all pending ones in one transaction that
// first takes a lock which dies with its holder: on PostgreSQL a transaction-scoped advisory
// lock, on SQLite the database's own write lock (BEGIN IMMEDIATE, from the DSN's _txlock).
// A manager killed or cancelled mid-way leaves nothing behind: its transaction rolls back,
// its lock goes with it, and the schema is as before, never half-migrated. bun's migrator
// kept its lock as a row that a cancelled start-up could leave set for good, locking every
// later start out. Applied migrations are still recorded in bun's table, so databases that
// bun migrated carry on.

// migrationTable is bun's record of applied migrations.
const migrationTable = "bun_migrations"

// migrationLockKey is the PostgreSQL advisory lock key of Hearth's migrations ("hearthmg").
const migrationLockKey int64 = 0x6865617274686d67

// migration is one embedded up migration, rendered for the dialect.
type migration struct {
	name    string // the id bun records: the file name up to the first "_"
	file    string
	queries []string
}

// loadMigrations reads the embedded up migrations, in order.
func (db *DB) loadMigrations() ([]migration, error) {
	files, err := fs.Glob(migrations.FS, "*.up.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []migration
	for _, f := range files {
		if !strings.HasSuffix(f, ".tx.up.sql") {
			return nil, fmt.Errorf("store: migration %s must be transactional (.tx.up.sql): all pending migrations run in one transaction", f)
		}
		name, _, ok := strings.Cut(f, "_")
		if !ok {
			return nil, fmt.Errorf("store: migration %s: want ID_name.tx.up.sql", f)
		}
		raw, err := fs.ReadFile(migrations.FS, f)
		if err != nil {
			return nil, err
		}
		qs, err := renderMigration(raw, db.dialect)
		if err != nil {
			return nil, fmt.Errorf("store: migration %s: %w", f, err)
		}
		out = append(out, migration{name: name, file: f, queries: qs})
	}
	return out, nil
}

// renderMigration fills the dialect's types into a migration and splits it into
// statements at "--bun:split" lines, as bun does.
func renderMigration(raw []byte, d migrations.Dialect) ([]string, error) {
	t, err := template.New("migration").Option("missingkey=error").Parse(string(raw))
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return nil, err
	}
	var queries []string
	var q strings.Builder
	sc := bufio.NewScanner(&b)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "--bun:") {
			if line != "--bun:split" {
				return nil, fmt.Errorf("unknown directive %q", line)
			}
			if q.Len() > 0 {
				queries = append(queries, q.String())
				q.Reset()
			}
			continue
		}
		if strings.TrimSpace(line) != "" {
			q.WriteString(line)
			q.WriteByte('\n')
		}
	}
	if q.Len() > 0 {
		queries = append(queries, q.String())
	}
	return queries, sc.Err()
}

// applied returns the names of the migrations recorded as applied, and the newest group.
// A database never migrated has no table yet: nothing applied.
func applied(ctx context.Context, idb bun.IDB, tableExists bool) (map[string]bool, int64, error) {
	done := map[string]bool{}
	if !tableExists {
		return done, 0, nil
	}
	var rows []migrate.Migration
	if err := idb.NewSelect().ColumnExpr("*").Model(&rows).ModelTableExpr(migrationTable).Scan(ctx); err != nil {
		return nil, 0, fmt.Errorf("store: read applied migrations: %w", err)
	}
	var group int64
	for _, r := range rows {
		done[r.Name] = true
		group = max(group, r.GroupID)
	}
	return done, group, nil
}

func (db *DB) tableExists(ctx context.Context, idb bun.IDB, table string) (bool, error) {
	q := "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
	if db.dialect.Name == migrations.Postgres.Name {
		q = "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?"
	}
	var n int
	if err := idb.QueryRowContext(ctx, q, table).Scan(&n); err != nil {
		return false, fmt.Errorf("store: look for table %s: %w", table, err)
	}
	return n > 0, nil
}

// Migrate applies every migration not yet applied and returns the names it applied. When
// there is nothing to apply it takes no lock at all.
func (db *DB) Migrate(ctx context.Context) ([]string, error) {
	ms, err := db.loadMigrations()
	if err != nil {
		return nil, err
	}
	exists, err := db.tableExists(ctx, db.bun, migrationTable)
	if err != nil {
		return nil, err
	}
	done, _, err := applied(ctx, db.bun, exists)
	if err != nil {
		return nil, err
	}
	if pending(ms, done) == 0 {
		return nil, nil
	}
	var names []string
	err = db.bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		names = nil // a retried body starts over
		if db.dialect.Name == migrations.Postgres.Name {
			if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(?)", migrationLockKey); err != nil {
				return fmt.Errorf("store: lock migrations: %w", err)
			}
		}
		// Under the lock, look again: another manager may have migrated meanwhile.
		if _, err := tx.NewCreateTable().Model((*migrate.Migration)(nil)).ModelTableExpr(migrationTable).IfNotExists().Exec(ctx); err != nil {
			return fmt.Errorf("store: create %s: %w", migrationTable, err)
		}
		done, group, err := applied(ctx, tx, true)
		if err != nil {
			return err
		}
		group++
		for _, m := range ms {
			if done[m.name] {
				continue
			}
			for _, q := range m.queries {
				if _, err := tx.ExecContext(ctx, q); err != nil {
					return fmt.Errorf("store: migration %s: %w", m.file, err)
				}
			}
			rec := &migrate.Migration{Name: m.name, GroupID: group}
			if _, err := tx.NewInsert().Model(rec).ModelTableExpr(migrationTable).Exec(ctx); err != nil {
				return fmt.Errorf("store: record migration %s: %w", m.file, err)
			}
			names = append(names, m.name)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return names, nil
}

func pending(ms []migration, done map[string]bool) int {
	n := 0
	for _, m := range ms {
		if !done[m.name] {
			n++
		}
	}
	return n
}
