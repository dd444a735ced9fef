// Command hearth-agent runs inside a VM and reports what the guest is doing: GET /metrics
// (JSON, or Prometheus text when asked) and GET /health on :8080 (guest/api), and, when configured,
// registers the guest's IP with the Hearth manager. See guest/config for its settings.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"hearth/guest/collect"
	"hearth/guest/config"
	"hearth/guest/register"
	"hearth/guest/server"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "hearth-agent:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 1 && (args[0] == "--version" || args[0] == "version") {
		fmt.Fprintf(stdout, "hearth-agent %s\n", version)
		return nil
	}
	cfg, err := config.Load(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	// Serve only once a first CPU figure exists: every answer then carries one.
	sampler := collect.NewSampler(collect.NewReader(), cfg.SampleInterval, version)
	sampler.Prime(ctx)
	go sampler.Run(ctx)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           server.New(sampler, server.Options{Token: cfg.Token, Version: version, Logger: log}),
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 15 * time.Second,
		IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	log.Info("hearth-agent serving", "version", version, "addr", ln.Addr().String(), "auth", cfg.Token != "",
		"interval", cfg.SampleInterval, "config", cfg.ConfigPath)

	if cfg.Registers() {
		r := &register.Registrar{ManagerURL: cfg.ManagerURL, VMID: cfg.VMID, Token: cfg.RegToken, Logger: log}
		go r.Run(ctx)
	} else {
		log.Info("guest IP registration off (no manager URL configured)")
	}

	select {
	case err := <-done:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
