package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRunAsScripted is the documented use: `hearth-agent --listen 127.0.0.1:PORT` with
// HEARTH_AGENT_TOKEN in the environment, then a clean stop when the context ends (SIGTERM).
func TestRunAsScripted(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	env := map[string]string{"HEARTH_AGENT_TOKEN": "hag_scripted_token_123"}
	ctx, cancel := context.WithCancel(context.Background())
	var stderr bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--listen", addr, "--config", "/dev/null"}, func(k string) string { return env[k] }, io.Discard, &stderr)
	}()
	get := func(path, token string) (*http.Response, []byte) {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	deadline := time.Now().Add(10 * time.Second)
	var body []byte
	for {
		resp, b := get("/metrics", "hag_scripted_token_123")
		if resp != nil && resp.StatusCode == 200 {
			body = b
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent never served metrics; log:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil || m["memory_usage_percent"] == nil {
		t.Errorf("metrics body: %v %s", err, body)
	}
	// The very first answer already has a CPU figure: the agent serves once it has one.
	if m["cpu_usage_percent"] == nil || m["page_cache"] == nil {
		t.Errorf("the first answer has no CPU figure or page-cache counters: %s", body)
	}
	if resp, _ := get("/metrics", ""); resp == nil || resp.StatusCode != 401 {
		t.Errorf("metrics without the token: %v", resp)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after stop: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not stop")
	}
	if !strings.Contains(stderr.String(), "shutting down") {
		t.Errorf("no shutdown log line:\n%s", stderr.String())
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	err := run(context.Background(), []string{"--listen", "nope"}, func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "host:port") {
		t.Errorf("bad listen: %v", err)
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--version"}, func(string) string { return "" }, &out, io.Discard); err != nil || !strings.HasPrefix(out.String(), "hearth-agent ") {
		t.Errorf("--version: %v %q", err, out.String())
	}
}
