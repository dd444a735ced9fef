package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"hearth/app/config"
)

// oneShot reads a one-shot command's flags and names (in any order), checks it got want
// names, and only then opens the migrated store: a mistyped or --help command creates
// nothing.
func oneShot(ctx context.Context, args []string, want int, usageLine string, getenv func(string) string, stderr io.Writer) (*Main, []string, error) {
	cfg, names, err := config.Parse(args, getenv)
	if err != nil {
		return nil, nil, err
	}
	if len(names) != want {
		return nil, nil, errors.New("usage: " + usageLine)
	}
	m, err := openServices(ctx, cfg, newLogger("warn", stderr), false)
	return m, names, err
}

func migrateCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	m, _, err := oneShot(ctx, args, 0, "hearth migrate [flags]", getenv, stderr)
	if err != nil {
		return err
	}
	defer m.DB.Close()
	fmt.Fprintf(stdout, "database %s is up to date\n", m.DB.Where)
	return nil
}

func userCmd(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	const line = "hearth user create|passwd NAME [flags]  (password on stdin)"
	if len(args) == 0 || (args[0] != "create" && args[0] != "passwd") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return flag.ErrHelp
		}
		return errors.New("usage: " + line)
	}
	verb := args[0]
	if _, names, err := config.Parse(args[1:], getenv); err != nil {
		return err
	} else if len(names) != 1 {
		return errors.New("usage: " + line)
	}
	pw, err := readPassword(stdin) // before anything is opened: no password, nothing made
	if err != nil {
		return err
	}
	m, names, err := oneShot(ctx, args[1:], 1, line, getenv, stderr)
	if err != nil {
		return err
	}
	defer m.DB.Close()
	name := names[0]
	if verb == "create" {
		if _, err := m.Auth.CreateUser(ctx, name, pw, cliActor); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created user %s\n", name)
		return nil
	}
	if err := m.Auth.SetPassword(ctx, name, pw, cliActor); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "changed the password of %s and ended their sessions\n", name)
	return nil
}

// readPassword reads the first line of stdin, so `echo pw | hearth user create x` works.
func readPassword(stdin io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("no password on stdin (pipe it in: echo 'secret' | hearth user …)")
	}
	return line, nil
}

const tokenUsage = "hearth token create NAME | hearth token list | hearth token revoke NAME  [flags]"

func tokenCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: " + tokenUsage)
	}
	verb, want := args[0], 1
	switch verb {
	case "create", "revoke":
	case "list":
		want = 0
	case "-h", "--help":
		return flag.ErrHelp
	default:
		return errors.New("usage: " + tokenUsage)
	}
	m, names, err := oneShot(ctx, args[1:], want, tokenUsage, getenv, stderr)
	if err != nil {
		return err
	}
	defer m.DB.Close()
	switch verb {
	case "create":
		token, err := m.Auth.CreateAPIToken(ctx, names[0], cliActor)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, token)
	case "revoke":
		if err := m.Auth.RevokeAPIToken(ctx, names[0], cliActor); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked API token %s\n", names[0])
	case "list":
		tokens, err := m.Auth.APITokens(ctx)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "NAME\tCREATED\tLAST USED")
		for _, t := range tokens {
			used := "never"
			if !t.LastUsedAt.IsZero() {
				used = t.LastUsedAt.Format(time.RFC3339)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\n", t.Name, t.CreatedAt.Format(time.RFC3339), used)
		}
		w.Flush()
	}
	return nil
}
