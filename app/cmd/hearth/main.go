// Command hearth is the Hearth manager: `hearth serve` runs it; the other subcommands manage
// the database, users and API tokens from the shell. main only wires: it reads
// configuration, opens the store, builds the services and the web server.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"hearth/app"
	"hearth/app/config"
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

const commands = `Hearth manages Firecracker microVMs and shows what happens inside them.

Usage:
  hearth serve [flags]                 run the manager (web UI and API)
  hearth migrate [flags]               apply database migrations and exit
  hearth user create NAME [flags]      add an operator; password read from stdin
  hearth user passwd NAME [flags]      set an operator's password from stdin; ends their sessions
  hearth token create NAME [flags]     create an API token and print it (shown once)
  hearth token list [flags]            list API tokens: name, created, last used
  hearth token revoke NAME [flags]     revoke an API token: requests carrying it are refused
  hearth image build NAME [--release bookworm] [--init systemd|openrc] [--size 2G]
                                       build an image from Debian's packages (root, mmdebstrap)
  hearth image import NAME --kernel F [--initrd F] --rootfs F
                                       import an image from a kernel and an ext4 root filesystem
  hearth image list | delete NAME      the images; delete one no VM uses
  hearth version                       print the version and the embedded agents
  hearth help                          this text

Flags go before or after a command's names. Each flag's default comes from the
environment variable in parentheses.

`

// usage writes the commands and every flag.
func usage(w io.Writer) {
	fmt.Fprint(w, commands)
	config.PrintFlags(w)
}

// run is main without the process: testable, with its environment passed in. setenv
// changes the process's own environment (serve points TMPDIR into the data dir); tests
// pass one that changes nothing.
func run(ctx context.Context, args []string, getenv func(string) string, setenv func(key, value string) error, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return fmt.Errorf("no command given")
	}
	err := dispatch(ctx, args, getenv, setenv, stdin, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) { // --help anywhere: the usage, and no error
		usage(stdout)
		return nil
	}
	return err
}

func dispatch(ctx context.Context, args []string, getenv func(string) string, setenv func(key, value string) error, stdin io.Reader, stdout, stderr io.Writer) error {
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
	case "image":
		return imageCmd(ctx, rest, getenv, stdout, stderr)
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
		return flag.ErrHelp
	}
	usage(stderr)
	return fmt.Errorf("unknown command %q", cmd)
}
