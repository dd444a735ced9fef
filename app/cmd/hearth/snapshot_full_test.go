package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"hearth/app"
	"hearth/internal/testkit/qemutest"
	"hearth/internal/testkit/testenv"
)

// TestSnapshotDiskFull: the VM's snapshots directory on a small tmpfs of the test's own.
// Too little space: the snapshot is refused at once with the sizes (507), nothing is
// written, no record is made and the guest runs on. Then room enough for the check, but
// the disk fills while the state is written: the snapshot fails saying so, its temporary
// directory and its disk part (the overlay's internal snapshot) are gone, the guest runs
// on, and a later snapshot with room works.
func TestSnapshotDiskFull(t *testing.T) {
	if testenv.InOwnMountNS(t) {
		return
	}
	qemutest.QEMU(t)
	kernel, mods := qemutest.Kernel(t)
	initrd := qemutest.InitramfsWith(t, mods, qemutest.ShellInit, nil)
	images := t.TempDir()
	disk := filepath.Join(images, "blank.img")
	os.WriteFile(disk, make([]byte, 4<<20), 0o644)
	m, _ := startMain(t, map[string]string{"HEARTH_HYPERVISOR": "qemu",
		"HEARTH_IMAGE_DIRS": strings.Join(append(qemutest.ImageDirs(), images), ",")})
	token, err := m.Auth.CreateAPIToken(t.Context(), "full", cliActor)
	if err != nil {
		t.Fatal(err)
	}
	api := func(method, path, body string) (int, map[string]any) {
		return call(t, m.URL(), token, method, path, body)
	}
	body, _ := json.Marshal(map[string]any{"name": "fills", "kernel": kernel, "initrd": initrd, "rootfs": disk, "provision": false,
		"boot_args": "console=ttyS0 panic=-1 rdinit=/init", "memory_mib": 256})
	status, vm := api("POST", "/v1/vms", string(body))
	if status != 201 {
		t.Fatalf("create: %d %v", status, vm)
	}
	id := vm["id"].(string)
	snaps := filepath.Join(m.Config.DataDir, "vms", id, "snapshots")
	mount := func(size string) {
		t.Helper()
		syscall.Unmount(snaps, syscall.MNT_DETACH)
		os.MkdirAll(snaps, 0o700)
		if err := syscall.Mount("tmpfs", snaps, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
			testenv.Missing(t, "tmpfs mounts (root)", err)
		}
	}
	mount("16m")
	t.Cleanup(func() { syscall.Unmount(snaps, syscall.MNT_DETACH) })
	if status, out := api("POST", "/v1/vms/"+id+"/start", ""); status != 200 {
		t.Fatalf("start: %d %v", status, out)
	}
	t.Cleanup(func() { exec.Command("pkill", "-KILL", "-f", "hearth-"+id).Run() })
	waitBooted(t, m, id)

	status, out := api("POST", "/v1/vms/"+id+"/snapshots", `{"name":"toobig"}`)
	msg, _ := json.Marshal(out)
	t.Logf("too little space: %d %s", status, msg)
	if status != 507 || !strings.Contains(string(msg), "not enough space for the snapshot") || !strings.Contains(string(msg), "MiB") {
		t.Errorf("snapshot into 16 MiB: %d %s", status, msg)
	}
	if entries, _ := os.ReadDir(snaps); len(entries) != 0 {
		t.Errorf("a refused snapshot left %v", entries)
	}
	if _, list := api("GET", "/v1/vms/"+id+"/snapshots", ""); len(list["snapshots"].([]any)) != 0 {
		t.Errorf("a refused snapshot was recorded: %v", list)
	}
	if _, v := api("GET", "/v1/vms/"+id, ""); v["state"] != "running" {
		t.Errorf("after a refused snapshot the VM is %v", v["state"])
	}

	// Room for the check (memory + margin), then the disk fills behind it: the guest's
	// memory holds 120 MiB of random bytes, so writing its state takes a while (~0.1 s),
	// and the space left is taken at once (fallocate) the moment the snapshot's temporary
	// directory appears — watched for from before the request, as an answer and a
	// scheduler under load can come after the whole write.
	hub, _ := m.VMs.Console(t.Context(), id)
	viewer, _ := hub.Join()
	shell(t, hub, viewer, "\ndd if=/dev/urandom of=/fill bs=1M count=120 2>/dev/null")
	mount("330m")
	took := make(chan error, 1)
	go func() {
		tmp := app.FilesOf(m.Config.DataDir, id).SnapshotTemp("cutshort")
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
			if _, err := os.Stat(tmp); err == nil {
				took <- take(filepath.Join(snaps, "someone-else"))
				return
			}
		}
		took <- fmt.Errorf("%s never appeared", tmp)
	}()
	status, out = api("POST", "/v1/vms/"+id+"/snapshots", `{"name":"cutshort"}`)
	if status != 202 {
		t.Fatalf("snapshot with room: %d %v", status, out)
	}
	if err := <-took; err != nil {
		t.Fatalf("take the space while the snapshot is written: %v", err)
	}
	var sn map[string]any
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		_, sn = api("GET", "/v1/vms/"+id+"/snapshots/cutshort", "")
		if sn["state"] != app.SnapshotTaking || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("filled while written: %v: %v", sn["state"], sn["error"])
	if sn["state"] != app.SnapshotFailed || !strings.Contains(sn["error"].(string), "filled up") {
		t.Errorf("a snapshot cut short by a full disk: %v", sn)
	}
	entries, _ := os.ReadDir(snaps)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "someone-else") {
			t.Errorf("a failed snapshot left %s", e.Name())
		}
	}
	overlay := filepath.Join(m.Config.DataDir, "vms", id, "run", "rootfs.qcow2")
	if list, err := exec.Command("qemu-img", "snapshot", "-l", "-U", overlay).CombinedOutput(); err != nil || strings.Contains(string(list), "hearth-cutshort") {
		t.Errorf("the failed snapshot's disk part is still in the overlay (%v):\n%s", err, list)
	}
	if _, v := api("GET", "/v1/vms/"+id, ""); v["state"] != "running" {
		t.Errorf("after a failed snapshot the VM is %v", v["state"])
	}
	if got := shell(t, hub, viewer, "\necho still-''alive"); !strings.Contains(got, "still-alive") {
		t.Errorf("the guest does not run after the failed snapshot: %q", got)
	}

	// Freed: a snapshot works again.
	os.Remove(filepath.Join(snaps, "someone-else"))
	os.Remove(filepath.Join(snaps, "someone-else.rest"))
	if status, out := api("POST", "/v1/vms/"+id+"/snapshots", `{"name":"room"}`); status != 202 {
		t.Fatalf("snapshot after freeing space: %d %v", status, out)
	}
	for _, s := range waitSnapshots(t, api, id) {
		if s["name"] == "room" && s["state"] != app.SnapshotReady {
			t.Errorf("snapshot with room: %v", s)
		}
	}
}

// take allocates all the space left on path's filesystem at once.
func take(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var st syscall.Statfs_t
	syscall.Statfs(filepath.Dir(path), &st)
	size := int64(st.Bavail) * int64(st.Bsize)
	for size > 0 && syscall.Fallocate(int(f.Fd()), 0, 0, size) != nil {
		size -= 1 << 20 // someone else's writes took some meanwhile
	}
	return fillUp(path + ".rest") // and the last partial blocks
}
