// Package storetest gives tests real databases: a fresh SQLite file, and a fresh database on a
// real PostgreSQL server, either the one named by HEARTH_TEST_PG or a throwaway cluster that
// it starts from the local PostgreSQL binaries and stops when the test binary ends.
package storetest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // "pgx" driver for the admin connection
)

// cluster is the throwaway PostgreSQL server shared by all tests of one test binary.
type cluster struct {
	dir    string // data dir and socket dir live under it
	pgctl  string
	cred   *syscall.Credential
	admin  string // DSN of the maintenance database
	err    error  // why there is no server
	startd bool   // we started it, so Main stops it
}

var (
	pgOnce sync.Once
	pg     cluster
	dbSeq  int
	seqMu  sync.Mutex
)

// postgres returns the admin DSN of a running server, starting the cluster on first use.
func postgres() (string, error) {
	pgOnce.Do(func() {
		if dsn := os.Getenv("HEARTH_TEST_PG"); dsn != "" {
			pg.admin = dsn
			return
		}
		pg.err = pg.start("127.0.0.1", "")
	})
	return pg.admin, pg.err
}

// binDir finds initdb: on PATH, else the newest /usr/lib/postgresql/*/bin.
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("no initdb on PATH or in /usr/lib/postgresql/*/bin (install postgresql)")
}

// start runs initdb and pg_ctl start in a temp dir, as the postgres (or nobody) user when
// we are root, since PostgreSQL refuses to run as root. The server listens on hosts (a
// comma-separated list, the first is the admin DSN's); clients from network allow (a CIDR,
// "" for loopback only) are trusted too.
func (c *cluster) start(hosts, allow string) error {
	bin, err := binDir()
	if err != nil {
		return err
	}
	c.pgctl = filepath.Join(bin, "pg_ctl")
	c.dir, err = os.MkdirTemp("", "hearth-pg-")
	if err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		if c.cred, err = unprivileged(); err != nil {
			return err
		}
		if err := os.Chown(c.dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return err
		}
	}
	first, _, _ := strings.Cut(hosts, ",")
	port, err := freePort(first)
	if err != nil {
		return err
	}
	data := filepath.Join(c.dir, "data")
	if out, err := c.run(filepath.Join(bin, "initdb"), "-D", data, "-U", "hearth", "--auth=trust",
		"--encoding=UTF8", "--no-sync", "--locale=C"); err != nil {
		return fmt.Errorf("initdb: %w: %s", err, out)
	}
	if allow != "" {
		f, err := os.OpenFile(filepath.Join(data, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(f, "host all all %s trust\n", allow)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	opts := fmt.Sprintf("-p %d -k %s -h %s -c fsync=off -c synchronous_commit=off -c full_page_writes=off", port, c.dir, hosts)
	if out, err := c.run(c.pgctl, "-D", data, "-o", opts, "-l", filepath.Join(c.dir, "log"), "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "log"))
		return fmt.Errorf("pg_ctl start: %w: %s %s", err, out, log)
	}
	c.startd = true
	c.admin = fmt.Sprintf("postgres://hearth@%s/postgres?sslmode=disable", net.JoinHostPort(first, strconv.Itoa(port)))
	return nil
}

func (c *cluster) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = c.dir
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	return cmd.CombinedOutput()
}

func (c *cluster) stop() {
	if c.startd {
		c.run(c.pgctl, "-D", filepath.Join(c.dir, "data"), "-m", "immediate", "-w", "stop") //nolint:errcheck // best effort at exit
	}
	if c.dir != "" {
		os.RemoveAll(c.dir)
	}
}

// unprivileged returns the credentials of the postgres user, or nobody.
func unprivileged() (*syscall.Credential, error) {
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New("running as root and found neither user postgres nor nobody to run PostgreSQL as")
}

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// newDatabase creates an empty database on the server and returns its DSN and a func that
// drops it.
func newDatabase(ctx context.Context, admin string) (string, func(), error) {
	seqMu.Lock()
	dbSeq++
	name := fmt.Sprintf("hearth_test_%d_%d", os.Getpid(), dbSeq)
	seqMu.Unlock()
	db, err := sql.Open("pgx", admin)
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		db.Close()
		return "", nil, fmt.Errorf("create database: %w", err)
	}
	drop := func() {
		db.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)") //nolint:errcheck // cleanup
		db.Close()
	}
	dsn, err := withDatabase(admin, name)
	if err != nil {
		drop()
		return "", nil, err
	}
	return dsn, drop, nil
}

// withDatabase replaces the database name in a URL DSN.
func withDatabase(dsn, name string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", fmt.Errorf("HEARTH_TEST_PG must be a postgres:// URL: %w", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}
