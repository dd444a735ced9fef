package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"hearth/app/config"
)

// withServices loads the configuration from flags after the positional args and opens the
// migrated store for a one-shot command.
func withServices(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer, f func(m *Main) error) error {
	cfg, err := config.Load(args, getenv, stderr)
	if err != nil {
		return err
	}
	m, err := openServices(ctx, cfg, newLogger("warn", stderr))
	if err != nil {
		return err
	}
	defer m.DB.Close()
	return f(m)
}

func migrateCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return withServices(ctx, args, getenv, stderr, func(m *Main) error {
		fmt.Fprintf(stdout, "database %s is up to date\n", m.DB.Where)
		return nil
	})
}

func userCmd(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) < 2 || (args[0] != "create" && args[0] != "passwd") {
		return errors.New("usage: hearth user create|passwd NAME  (password on stdin)")
	}
	verb, name := args[0], args[1]
	return withServices(ctx, args[2:], getenv, stderr, func(m *Main) error {
		pw, err := readPassword(stdin)
		if err != nil {
			return err
		}
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
	})
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

const tokenUsage = "usage: hearth token create NAME | hearth token list | hearth token revoke NAME"

func tokenCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(tokenUsage)
	}
	verb, rest := args[0], args[1:]
	name := ""
	switch verb {
	case "create", "revoke":
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			return errors.New(tokenUsage)
		}
		name, rest = rest[0], rest[1:]
	case "list":
	default:
		return errors.New(tokenUsage)
	}
	return withServices(ctx, rest, getenv, stderr, func(m *Main) error {
		switch verb {
		case "create":
			token, err := m.Auth.CreateAPIToken(ctx, name, cliActor)
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, token)
		case "revoke":
			if err := m.Auth.RevokeAPIToken(ctx, name, cliActor); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "revoked API token %s\n", name)
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
	})
}
