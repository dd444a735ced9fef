// Command hearth is the Hearth manager: `hearth serve` runs it; the other subcommands manage
// the database, users and API tokens from the shell. main only wires: it reads
// configuration, opens the store, builds the services and the web server.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"hearth/app"
	"hearth/provision/agents"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Setenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		msg := err.Error()
		if code := app.ErrorCode(err); code != app.EINTERNAL {
			msg = app.ErrorMessage(err) // a user error: its message is the whole story
		}
		fmt.Fprintln(os.Stderr, "hearth:", msg)
		os.Exit(1)
	}
}

const usage = `Hearth manages Firecracker microVMs and shows what happens inside them.

Usage:
  hearth serve [flags]           run the manager (web UI and API)
  hearth migrate [flags]         apply database migrations and exit
  hearth user create NAME        add an operator; password read from stdin
  hearth user passwd NAME        set an operator's password from stdin; ends their sessions
  hearth token create NAME       create an API token and print it (shown once)
  hearth token list              list API tokens: name, created, last used
  hearth token revoke NAME       revoke an API token: requests carrying it are refused
  hearth version                 print the version

Flags (each also read from the environment variable in brackets):
  --listen ADDR         address to serve on [HEARTH_LISTEN] (127.0.0.1:8080)
  --data-dir DIR        data directory [HEARTH_DATA_DIR] (./data)
  --database-url URL    postgres:// URL; empty means SQLite in the data dir [HEARTH_DATABASE_URL]
  --admin-password PW   password of user admin, created on a first start [HEARTH_ADMIN_PASSWORD]
  --public-url URL      URL guests use to reach the manager [HEARTH_PUBLIC_URL]
  --guest-cidrs LIST    networks a guest IP may lie in [HEARTH_GUEST_CIDRS]
  --image-dirs LIST     where VM kernels, initrds, rootfs must lie [HEARTH_IMAGE_DIRS] (DATA/images)
  --log-level LEVEL     debug, info, warn, error [HEARTH_LOG_LEVEL]
`

// run is main without the process: testable, with its environment passed in. setenv
// changes the process's own environment (serve points TMPDIR into the data dir); tests
// pass one that changes nothing.
func run(ctx context.Context, args []string, getenv func(string) string, setenv func(key, value string) error, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(ctx, rest, getenv, setenv, stdout, stderr)
	case "migrate":
		return migrateCmd(ctx, rest, getenv, stdout, stderr)
	case "user":
		return userCmd(ctx, rest, getenv, stdin, stdout, stderr)
	case "token":
		return tokenCmd(ctx, rest, getenv, stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "hearth %s\n", version)
		list := agents.List()
		if len(list) == 0 {
			fmt.Fprintln(stdout, "embedded agents: none (build with make guest build to provision VMs)")
		}
		for _, a := range list {
			fmt.Fprintf(stdout, "embedded: %s\n", a)
		}
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}
