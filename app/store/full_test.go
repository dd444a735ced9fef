package store

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"hearth/app"
	"hearth/migrations"
)

// TestFullIsRecognised: PostgreSQL's disk_full and an ENOSPC from below become EFULL with a
// message that says what to do; other errors pass through unchanged. (SQLite's SQLITE_FULL
// is met for real on a full tmpfs in app/cmd/hearth's TestDiskFull.)
func TestFullIsRecognised(t *testing.T) {
	pg := &DB{dialect: migrations.Postgres}
	lite := &DB{dialect: migrations.SQLite}
	for _, c := range []struct {
		db   *DB
		err  error
		want string
	}{
		{pg, fmt.Errorf("store: insert vm: %w", &pgconn.PgError{Code: "53100", Message: "could not extend file"}), "the database server's disk is full"},
		{lite, fmt.Errorf("write: %w", &os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}), "the data directory is full"},
		{lite, &os.PathError{Op: "write", Path: "x", Err: syscall.EDQUOT}, "the data directory is full"},
	} {
		got := c.db.full(c.err)
		if app.ErrorCode(got) != app.EFULL || !strings.Contains(app.ErrorMessage(got), c.want) {
			t.Errorf("full(%v) = %v, want EFULL %q", c.err, got, c.want)
		}
	}
	other := errors.New("connection refused")
	if got := pg.full(other); got != other {
		t.Errorf("full(%v) = %v", other, got)
	}
	if pg.full(nil) != nil {
		t.Error("full(nil) is not nil")
	}
}
