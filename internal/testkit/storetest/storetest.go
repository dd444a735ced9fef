package storetest

import (
	"context"
	"path/filepath"
	"testing"

	"hearth/app/store"
	"hearth/internal/testkit/testenv"
)

// Main runs a package's tests and then stops the PostgreSQL cluster if one was started.
// Use it from TestMain: func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }.
func Main(m *testing.M) int {
	code := m.Run()
	pg.stop()
	return code
}

// SQLite opens a migrated SQLite database in a temp dir, closed at cleanup.
func SQLite(tb testing.TB) *store.DB {
	tb.Helper()
	db, err := store.OpenSQLite(context.Background(), filepath.Join(tb.TempDir(), store.SQLiteFile))
	if err != nil {
		tb.Fatal(err)
	}
	return migrated(tb, db)
}

// PostgresDSN creates an empty database of its own on a real PostgreSQL server, dropped at
// cleanup, and returns its URL. With no server to be had, the test is skipped (or fails
// under HEARTH_REQUIRE_ALL).
func PostgresDSN(tb testing.TB) string {
	tb.Helper()
	admin, err := postgres()
	if err != nil {
		testenv.Missing(tb, "PostgreSQL", err)
	}
	dsn, drop, err := newDatabase(context.Background(), admin)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(drop)
	return dsn
}

// PostgresServer starts a PostgreSQL server of the test's own, listening on hosts (comma
// separated; the first is the returned DSN's) and trusting clients from the network allow
// as well as loopback (for tests whose nodes reach it over a link of their own), and
// returns the URL of an empty database on it. The server is stopped at cleanup.
func PostgresServer(tb testing.TB, hosts, allow string) string {
	tb.Helper()
	var c cluster
	if err := c.start(hosts, allow); err != nil {
		c.stop()
		testenv.Missing(tb, "PostgreSQL", err)
	}
	tb.Cleanup(c.stop)
	dsn, drop, err := newDatabase(context.Background(), c.admin)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(drop)
	return dsn
}

// Postgres opens a migrated database of its own on a real PostgreSQL server.
func Postgres(tb testing.TB) *store.DB {
	tb.Helper()
	db, err := store.OpenPostgres(context.Background(), PostgresDSN(tb))
	if err != nil {
		tb.Fatal(err)
	}
	return migrated(tb, db)
}

func migrated(tb testing.TB, db *store.DB) *store.DB {
	tb.Helper()
	tb.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return db
}

// EachDB runs f as a subtest against SQLite and against PostgreSQL, each with a fresh
// database, as bun's own tests do: one test body, every dialect.
func EachDB(t *testing.T, f func(t *testing.T, db *store.DB)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { f(t, SQLite(t)) })
	t.Run("postgres", func(t *testing.T) { f(t, Postgres(t)) })
}
