package store_test

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"

	"hearth/app/store"
	"hearth/internal/testkit/storetest"
	"hearth/migrations"
)

// opener opens fresh handles on one new, empty database of a dialect.
type opener func(t *testing.T) func(t *testing.T) *store.DB

func eachEmptyDB(t *testing.T, f func(t *testing.T, fresh opener)) {
	t.Run("sqlite", func(t *testing.T) {
		f(t, func(t *testing.T) func(t *testing.T) *store.DB {
			path := filepath.Join(t.TempDir(), store.SQLiteFile)
			return func(t *testing.T) *store.DB {
				db, err := store.OpenSQLite(context.Background(), path)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				return db
			}
		})
	})
	t.Run("postgres", func(t *testing.T) {
		f(t, func(t *testing.T) func(t *testing.T) *store.DB {
			dsn := storetest.PostgresDSN(t)
			return func(t *testing.T) *store.DB {
				db, err := store.OpenPostgres(context.Background(), dsn)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				return db
			}
		})
	})
}

func migrationCount(t *testing.T) int {
	files, err := fs.Glob(migrations.FS, "*.up.sql")
	if err != nil || len(files) == 0 {
		t.Fatal(files, err)
	}
	return len(files)
}

// appliedCount is how many migrations the database records, -1 without the table.
func appliedCount(t *testing.T, db *store.DB) int {
	t.Helper()
	var n int
	if err := db.Bun().QueryRowContext(context.Background(), "SELECT count(*) FROM bun_migrations").Scan(&n); err != nil {
		return -1
	}
	return n
}

func hasTable(t *testing.T, db *store.DB, table string) bool {
	t.Helper()
	_, err := db.Bun().ExecContext(context.Background(), "SELECT 1 FROM "+table+" WHERE 1 = 0")
	return err == nil
}

// cancelAt cancels the context of the query it counts to: start-up interrupted (SIGTERM)
// exactly there.
type cancelAt struct {
	n, at  int64
	cancel context.CancelFunc
}

func (h *cancelAt) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context {
	if atomic.AddInt64(&h.n, 1) == h.at {
		h.cancel()
	}
	return ctx
}

func (h *cancelAt) AfterQuery(context.Context, *bun.QueryEvent) {}

// TestMigrateCancelledAtEveryStep interrupts the migration of an empty database at each of
// its queries in turn. Whatever the step, the interrupted run leaves either nothing or the
// whole schema (one transaction), no lock survives it, and the next start-up migrates at
// once.
func TestMigrateCancelledAtEveryStep(t *testing.T) {
	eachEmptyDB(t, func(t *testing.T, fresh opener) {
		want := migrationCount(t)
		steps := 0
		for at := int64(1); ; at++ {
			open := fresh(t)
			db := open(t)
			ctx, cancel := context.WithCancel(context.Background())
			db.AddQueryHook(&cancelAt{at: at, cancel: cancel})
			_, err := db.Migrate(ctx)
			cancel()
			if err == nil {
				if n := appliedCount(t, db); n != want {
					t.Fatalf("an uninterrupted migration recorded %d of %d", n, want)
				}
				db.Close()
				break
			}
			steps++
			if got := appliedCount(t, db); got > 0 || hasTable(t, db, "vms") {
				t.Fatalf("cancelled at query %d: %d migrations recorded, vms table %v: half-migrated", at, got, hasTable(t, db, "vms"))
			}
			// The next manager, on a new connection as after a restart, must not find a lock.
			next := open(t)
			nctx, ncancel := context.WithTimeout(context.Background(), 10*time.Second)
			applied, err := next.Migrate(nctx)
			ncancel()
			if err != nil || len(applied) != want {
				t.Fatalf("after a cancel at query %d, the next start-up: %d applied, %v", at, len(applied), err)
			}
			db.Close()
			next.Close()
			if at > 200 {
				t.Fatal("the migration never completed")
			}
		}
		t.Logf("interrupted at each of %d queries; every next start-up migrated", steps)
		if steps < 3 {
			t.Errorf("only %d interruption points: the hook did not see the migration's queries", steps)
		}
	})
}

// TestMigrateConcurrent: eight managers (or `hearth token create`s) starting at once on an
// empty database all succeed, and each migration is applied exactly once.
func TestMigrateConcurrent(t *testing.T) {
	eachEmptyDB(t, func(t *testing.T, fresh opener) {
		open := fresh(t)
		var dbs []*store.DB
		for i := 0; i < 8; i++ {
			dbs = append(dbs, open(t))
		}
		var wg sync.WaitGroup
		errs := make([]error, len(dbs))
		total := make([]int, len(dbs))
		for i, db := range dbs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				applied, err := db.Migrate(context.Background())
				errs[i], total[i] = err, len(applied)
			}()
		}
		wg.Wait()
		sum := 0
		for i, err := range errs {
			if err != nil {
				t.Errorf("migrator %d: %v", i, err)
			}
			sum += total[i]
		}
		if want := migrationCount(t); sum != want || appliedCount(t, dbs[0]) != want {
			t.Errorf("applied %d in all, %d recorded; want %d once", sum, appliedCount(t, dbs[0]), want)
		}
	})
}

// TestMigrateUpToDateTakesNoLock: when nothing needs migrating, start-up does not wait for
// a lock, even while another session holds the write lock or the advisory lock.
func TestMigrateUpToDateTakesNoLock(t *testing.T) {
	eachEmptyDB(t, func(t *testing.T, fresh opener) {
		open := fresh(t)
		first := open(t)
		if _, err := first.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
		holder := open(t)
		tx, err := holder.Bun().BeginTx(context.Background(), nil) // SQLite: BEGIN IMMEDIATE
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		if holder.Dialect() == "pg" {
			if _, err := tx.ExecContext(context.Background(), "SELECT pg_advisory_xact_lock(?)", int64(0x6865617274686d67)); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		start := time.Now()
		if applied, err := open(t).Migrate(ctx); err != nil || len(applied) != 0 {
			t.Errorf("up-to-date migrate while the lock is held: %v %v", applied, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("it took %s", d)
		}
	})
}

// TestMigrateFromBunMigrator: a database that bun's migrator brought to migration 7, with
// the lock row a cancelled start-up left behind (the reported failure), is carried on: the
// rest is applied and the stale lock goes.
func TestMigrateFromBunMigrator(t *testing.T) {
	eachEmptyDB(t, func(t *testing.T, fresh opener) {
		open := fresh(t)
		db := open(t)
		old := fstest.MapFS{}
		files, _ := fs.Glob(migrations.FS, "*.sql")
		for _, f := range files {
			if f < "20261126000008" {
				b, _ := fs.ReadFile(migrations.FS, f)
				old[f] = &fstest.MapFile{Data: b}
			}
		}
		ms := migrate.NewMigrations()
		if err := ms.Discover(old); err != nil {
			t.Fatal(err)
		}
		d := migrations.SQLite
		if db.Dialect() == "pg" {
			d = migrations.Postgres
		}
		m := migrate.NewMigrator(db.Bun(), ms, migrate.WithTemplateData(d), migrate.WithMarkAppliedOnSuccess(true))
		ctx := context.Background()
		if err := m.Init(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		if err := m.Lock(ctx); err != nil { // and never unlocked, as after the cancelled start-up
			t.Fatal(err)
		}
		if err := m.Lock(ctx); err == nil || !strings.Contains(err.Error(), "already locked") {
			t.Fatalf("bun's stale lock does not bite: %v", err)
		}
		applied, err := open(t).Migrate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := migrationCount(t) - 7; len(applied) != want {
			t.Errorf("applied %v, want the %d newer ones", applied, want)
		}
		if hasTable(t, db, "bun_migration_locks") {
			t.Error("the stale lock table survived")
		}
		var id sql.NullString
		err = db.Bun().QueryRowContext(ctx, "SELECT pid_identity FROM vms LIMIT 1").Scan(&id)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			t.Errorf("migration 8 not applied: %v", err)
		}
	})
}

func TestSettings(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if v, err := db.Setting(ctx, "bridge_cidr"); err != nil || v != "" {
			t.Errorf("unset: %q %v", v, err)
		}
		db.SetSetting(ctx, "bridge_cidr", "10.77.0.1/24")
		db.SetSetting(ctx, "bridge_cidr", "10.77.3.1/24")
		if v, err := db.Setting(ctx, "bridge_cidr"); err != nil || v != "10.77.3.1/24" {
			t.Errorf("after two sets: %q %v", v, err)
		}
	})
}
