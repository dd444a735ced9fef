package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hearth/app"
	"hearth/internal/testkit/qemutest"
	"hearth/provision/seed"
)

// TestSeedRenderedAtStart: a provisioned VM has no seed on disk until it starts; its guest
// boots with the seed rendered into its run dir (the guest sees the disk), the download
// renders the same files, and the seed is gone once the VM has stopped.
func TestSeedRenderedAtStart(t *testing.T) {
	needAgent(t)
	qemutest.QEMU(t)
	kernel, mods := qemutest.Kernel(t)
	initrd := qemutest.Initramfs(t, mods)
	m, _ := startMain(t, map[string]string{"HEARTH_HYPERVISOR": "qemu", "HEARTH_STOP_TIMEOUT": "20s"})
	token, err := m.Auth.CreateAPIToken(t.Context(), "seed", cliActor)
	if err != nil {
		t.Fatal(err)
	}
	api := func(method, path, body string) (int, map[string]any) {
		return call(t, m.URL(), token, method, path, body)
	}
	body, _ := json.Marshal(map[string]any{"name": "seeded", "kernel": kernel, "initrd": initrd,
		"boot_args": "console=ttyS0 panic=-1 rdinit=/init", "memory_mib": 256})
	status, v := api("POST", "/v1/vms", string(body))
	if status != 201 || v["provisioned"] != true {
		t.Fatalf("create: %d %v", status, v)
	}
	id := v["id"].(string)
	files := app.FilesOf(m.Config.DataDir, id)
	if _, err := os.Stat(files.Dir); !os.IsNotExist(err) {
		t.Errorf("created, not started: the VM already has files (%v)", err)
	}
	if status, out := api("POST", "/v1/vms/"+id+"/start", ""); status != 200 {
		t.Fatalf("start: %d %v", status, out)
	}
	t.Cleanup(func() { exec.Command("pkill", "-KILL", "-f", "hearth-"+id).Run() })
	running, err := seed.Read(files.RunSeed())
	if err != nil {
		t.Fatalf("the running VM's seed: %v", err)
	}
	if md := string(running["meta-data"]); !strings.Contains(md, `instance-id: "`+id+`"`) || len(running[seed.AgentFile]) < 1<<20 {
		t.Errorf("seed of the run: meta-data %q, agent %d bytes", md, len(running[seed.AgentFile]))
	}
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(m.VMs.ConsoleTail(id, 40), "HEARTH-MARKER: booted") {
		if time.Now().After(deadline) {
			t.Fatalf("the guest did not boot:\n%s", m.VMs.ConsoleTail(id, 40))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if tail := m.VMs.ConsoleTail(id, 40); !strings.Contains(tail, "HEARTH-DISKS: vda") {
		t.Errorf("the guest does not see the seed as a disk:\n%s", tail)
	}
	// The download renders the same files again.
	req, _ := http.NewRequest("GET", m.URL()+"/v1/vms/"+id+"/seed.iso", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	iso, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	dl := filepath.Join(t.TempDir(), "dl.iso")
	os.WriteFile(dl, iso, 0o600)
	got, err := seed.Read(dl)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("download: %d %v", resp.StatusCode, err)
	}
	for name, b := range running {
		if !bytes.Equal(got[name], b) {
			t.Errorf("the download's %s differs from the running VM's", name)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(files.Dir, seed.TempPrefix+"*")); len(left) > 0 {
		t.Errorf("the download left %v", left)
	}
	if status, out := api("POST", "/v1/vms/"+id+"/stop", ""); status != 202 {
		t.Fatalf("stop: %d %v", status, out)
	}
	for {
		_, out := api("GET", "/v1/vms/"+id, "")
		if out["state"] == "stopped" {
			break
		}
		if time.Now().After(deadline.Add(30 * time.Second)) {
			t.Fatalf("not stopped: %v", out["state"])
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := os.Stat(files.RunSeed()); !os.IsNotExist(err) {
		t.Errorf("the stopped VM's seed is still on disk: %v", err)
	}
	var size int64
	filepath.Walk(files.Dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			size += fi.Size()
		}
		return nil
	})
	t.Logf("the stopped VM's directory: %d bytes (the seed was %d)", size, len(iso))
	if size > 1<<20 {
		t.Errorf("the stopped VM keeps %d bytes", size)
	}
}
