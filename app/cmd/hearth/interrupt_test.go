package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"hearth/internal/testkit/storetest"
)

// TestStartUpInterrupted sends the equivalent of SIGTERM (the signal context's cancel) to
// `hearth serve` at moments spread over its start-up on a fresh database, as the attack
// did 61 times; after each, `hearth token create` must work at once: no lock or half state
// survives an interrupted start.
func TestStartUpInterrupted(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			fresh := func() func(string) string {
				env := map[string]string{"HEARTH_DATA_DIR": t.TempDir(), "HEARTH_LISTEN": "127.0.0.1:0", "HEARTH_LOG_LEVEL": "error"}
				if dialect == "postgres" {
					env["HEARTH_DATABASE_URL"] = storetest.PostgresDSN(t)
				}
				return testEnv(env)
			}
			// How long an uninterrupted start-up takes, to spread the interruptions over.
			getenv := fresh()
			ctx, cancel := context.WithCancel(context.Background())
			started := make(chan error, 1)
			begin := time.Now()
			go func() {
				started <- run(ctx, []string{"serve"}, getenv, noSetenv, strings.NewReader(""), io.Discard, io.Discard)
			}()
			var full time.Duration
			for full == 0 {
				if err := run(context.Background(), []string{"token", "create", "probe"}, getenv, noSetenv, nil, io.Discard, io.Discard); err == nil {
					full = time.Since(begin)
				}
				time.Sleep(time.Millisecond)
			}
			cancel()
			<-started
			tries := 30
			for i := 0; i < tries; i++ {
				getenv := fresh()
				at := full * time.Duration(i) / time.Duration(tries)
				ctx, cancel := context.WithTimeout(context.Background(), at)
				serr := run(ctx, []string{"serve"}, getenv, noSetenv, strings.NewReader(""), io.Discard, io.Discard)
				cancel()
				tctx, tcancel := context.WithTimeout(context.Background(), 20*time.Second)
				if err := run(tctx, []string{"token", "create", "after"}, getenv, noSetenv, nil, io.Discard, io.Discard); err != nil {
					t.Errorf("serve interrupted after %s (%v); then token create: %v", at, serr, err)
				}
				tcancel()
			}
			t.Logf("start-up takes ~%s; interrupted %d times across it, every next command worked", full.Round(time.Millisecond), tries)
		})
	}
}
