// Package store keeps Hearth's records with bun, on an embedded SQLite file by default or on
// PostgreSQL. Queries are written once; the few schema differences live in the templated
// migrations.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"hearth/app"
	"hearth/migrations"
)

// DB is Hearth's database.
type DB struct {
	bun     *bun.DB
	dialect migrations.Dialect
	// Where reports where the data lives, for logs: a file path or a redacted URL.
	Where string
	dsn   string // PostgreSQL's, for the connection that LISTENs
}

// SQLiteFile is the database file name inside the data dir.
const SQLiteFile = "hearth.db"

// Open opens the database: an empty dsn means the SQLite file in dataDir (created with the
// directory if missing), a postgres:// URL means PostgreSQL. It does not migrate.
func Open(ctx context.Context, dsn, dataDir string) (*DB, error) {
	if dsn == "" {
		if err := os.MkdirAll(dataDir, 0o750); err != nil {
			return nil, fmt.Errorf("store: create data dir: %w", err)
		}
		return OpenSQLite(ctx, filepath.Join(dataDir, SQLiteFile))
	}
	return OpenPostgres(ctx, dsn)
}

// OpenSQLite opens (creating) the SQLite database at path, in WAL mode with foreign keys on
// and a busy timeout so that concurrent writers wait instead of failing.
func OpenSQLite(ctx context.Context, path string) (*DB, error) {
	dsn := "file:" + path + "?_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)" +
		"&_pragma=busy_timeout(5000)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	sqldb, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open sqlite: %w", err)
	}
	db := &DB{bun: bun.NewDB(sqldb, sqlitedialect.New()), dialect: migrations.SQLite, Where: path}
	if err := db.bun.PingContext(ctx); err != nil {
		sqldb.Close()
		return nil, fmt.Errorf("store: open sqlite %s: %w", path, err)
	}
	return db, nil
}

// OpenPostgres connects to PostgreSQL at dsn.
func OpenPostgres(ctx context.Context, dsn string) (*DB, error) {
	sqldb, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open postgres: %w", err)
	}
	sqldb.SetMaxOpenConns(16)
	db := &DB{bun: bun.NewDB(sqldb, pgdialect.New()), dialect: migrations.Postgres, Where: redact(dsn), dsn: dsn}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.bun.PingContext(pingCtx); err != nil {
		sqldb.Close()
		return nil, fmt.Errorf("store: connect to postgres %s: %w", db.Where, err)
	}
	return db, nil
}

// redact hides a password in a URL-form DSN.
func redact(dsn string) string {
	if i := strings.Index(dsn, "://"); i >= 0 {
		if j := strings.LastIndex(dsn, "@"); j > i {
			userinfo := dsn[i+3 : j]
			if k := strings.Index(userinfo, ":"); k >= 0 {
				return dsn[:i+3] + userinfo[:k] + ":xxxxx" + dsn[j:]
			}
		}
	}
	return dsn
}

// Dialect is "sqlite" or "pg".
func (db *DB) Dialect() string { return db.dialect.Name }

// Close closes the database.
func (db *DB) Close() error { return db.bun.Close() }

// Ping checks the database answers.
func (db *DB) Ping(ctx context.Context) error { return db.bun.PingContext(ctx) }

// now is the store's clock: UTC, truncated to microseconds so values survive a round trip
// through PostgreSQL unchanged.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// isUnique reports whether err is a unique-constraint violation in either dialect.
func isUnique(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23505"
	}
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) {
		return sqErr.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || sqErr.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// notFound turns sql.ErrNoRows into an ENOTFOUND error about what.
func notFound(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return app.Errorf(app.ENOTFOUND, "%s not found", what)
	}
	return err
}

// inTx runs fn in a transaction: all of its writes land, or none.
func (db *DB) inTx(ctx context.Context, fn func(tx bun.Tx) error) error {
	return db.full(db.bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error { return fn(tx) }))
}

// full turns a write that failed for lack of disk space into an EFULL error that says so,
// and leaves any other error as it is. SQLite reports SQLITE_FULL (its write was rolled
// back, the file stays consistent); PostgreSQL reports SQLSTATE 53100 disk_full.
func (db *DB) full(err error) error {
	if err == nil {
		return nil
	}
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) && sqErr.Code()&0xff == sqlite3.SQLITE_FULL || app.NoSpace(err) {
		if db.dialect.Name == migrations.Postgres.Name {
			return app.Errorf(app.EFULL, "the database server's disk is full: free space there and try again (nothing was written)")
		}
		return app.FullDataDir()
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "53100" {
		return app.Errorf(app.EFULL, "the database server's disk is full: free space there and try again (nothing was written)")
	}
	return err
}

// MaxDetail bounds a free text the store keeps (an audit entry's detail, a job's error):
// parts of it come from guests and clients, and a row must stay small whatever they send.
const MaxDetail = 4 << 10

const maxActor = 256

// audit inserts e (if not nil) within tx, stamping its time.
func audit(ctx context.Context, tx bun.IDB, e *app.AuditEntry) error {
	if e == nil {
		return nil
	}
	row := auditRow{At: now(), Actor: app.Clip(e.Actor, maxActor), Action: e.Action, Addr: app.Clip(e.Addr, maxActor), Detail: app.Clip(e.Detail, MaxDetail)}
	if e.VMID != "" {
		row.VMID = sql.NullString{String: e.VMID, Valid: true}
	}
	if _, err := tx.NewInsert().Model(&row).Exec(ctx); err != nil {
		return fmt.Errorf("store: insert audit entry: %w", err)
	}
	return nil
}

type writeProbeRow struct {
	bun.BaseModel `bun:"table:write_probe"`

	ID int64     `bun:"id,pk"`
	At time.Time `bun:"at"`
}

// ProbeWrite writes one small row, to tell whether the database takes writes (a full disk
// still answers reads).
func (db *DB) ProbeWrite(ctx context.Context) error {
	return db.inTx(ctx, func(tx bun.Tx) error {
		_, err := tx.NewInsert().Model(&writeProbeRow{ID: 1, At: now()}).On("CONFLICT (id) DO UPDATE").Set("at = EXCLUDED.at").Exec(ctx)
		return err
	})
}

// IntegrityCheck runs SQLite's integrity_check and returns its verdict, "ok" when the file
// is sound. PostgreSQL checks itself; there it returns "ok" after a ping.
func (db *DB) IntegrityCheck(ctx context.Context) (string, error) {
	if db.dialect.Name != migrations.SQLite.Name {
		return "ok", db.Ping(ctx)
	}
	var verdict string
	if err := db.bun.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&verdict); err != nil {
		return "", fmt.Errorf("store: integrity check: %w", err)
	}
	return verdict, nil
}

// OnceInCluster runs f unless another node runs the same named housekeeping now: on
// PostgreSQL under a session advisory lock (pg_try_advisory_lock on the name's hash,
// taken and released on one pinned connection); on SQLite, one host, it just runs f.
// ran says whether f ran.
func (db *DB) OnceInCluster(ctx context.Context, name string, f func(context.Context) error) (ran bool, err error) {
	if db.dialect.Name != migrations.Postgres.Name {
		return true, f(ctx)
	}
	conn, err := db.bun.Conn(ctx)
	if err != nil {
		return false, fmt.Errorf("store: a connection for %s: %w", name, err)
	}
	defer conn.Close()
	var got bool
	if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock(hashtext(?))", name).Scan(&got); err != nil {
		return false, fmt.Errorf("store: lock %s: %w", name, err)
	}
	if !got {
		return false, nil
	}
	defer conn.ExecContext(context.Background(), "SELECT pg_advisory_unlock(hashtext(?))", name) //nolint:errcheck // the session's end releases it too
	return true, f(ctx)
}
