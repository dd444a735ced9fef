package web

import (
	"encoding/json"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hearth/app"
	"hearth/app/hypervisor"
	"hearth/app/hypervisor/qemu"
	"hearth/app/vm"
	"hearth/internal/testkit/qemutest"
)

// lifecycleEnv runs VMs under real QEMU; guestJSON is a create body for the busybox guest.
func lifecycleEnv(t *testing.T) (*env, string) {
	t.Helper()
	bin := qemutest.QEMU(t)
	kernel, mods := qemutest.Kernel(t)
	initrd := qemutest.Initramfs(t, mods)
	e := newEnv(t, nil)
	e.vms.WithRuntime(vmRuntime(t, bin))
	body, _ := json.Marshal(map[string]any{"name": "api-life", "kernel": kernel, "initrd": initrd,
		"boot_args": "console=ttyS0 panic=-1 rdinit=/init", "provision": false})
	t.Cleanup(e.vms.WaitIdle)
	return e, string(body)
}

func vmRuntime(t *testing.T, bin string) vm.Runtime {
	return vm.Runtime{Drivers: map[string]hypervisor.Driver{"qemu": &qemu.Driver{Binary: bin}}, Default: "qemu",
		ImageDirs: qemutest.ImageDirs(), StopTimeout: 20 * time.Second}
}

func (e *env) vmState(t *testing.T, id string) vmJSON {
	t.Helper()
	_, body := e.api("GET", "/v1/vms/"+id, "", "")
	var v vmJSON
	json.Unmarshal([]byte(body), &v)
	return v
}

func (e *env) waitFor(t *testing.T, id, state string, within time.Duration) vmJSON {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		v := e.vmState(t, id)
		if v.State == state {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("VM is %s (%s), want %s", v.State, v.StateReason, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestAPILifecycle(t *testing.T) {
	e, body := lifecycleEnv(t)
	status, out := e.api("POST", "/v1/vms", body, "")
	if status != 201 {
		t.Fatalf("create: %d %s", status, out)
	}
	var v vmJSON
	json.Unmarshal([]byte(out), &v)
	if status, out := e.api("POST", "/v1/vms/"+v.ID+"/stop", "", ""); status != 409 {
		t.Errorf("stop a defined VM: %d %s", status, out)
	}
	status, out = e.api("POST", "/v1/vms/"+v.ID+"/start", "", "")
	if status != 200 || !strings.Contains(out, `"state":"running"`) {
		t.Fatalf("start: %d %s", status, out)
	}
	if status, _ := e.api("POST", "/v1/vms/"+v.ID+"/start", "", ""); status != 409 {
		t.Errorf("second start: %d", status)
	}
	if status, _ := e.api("DELETE", "/v1/vms/"+v.ID, "", ""); status != 409 {
		t.Errorf("delete while running: %d", status)
	}
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(e.vms.ConsoleTail(v.ID, 20), "HEARTH-MARKER") {
		if time.Now().After(deadline) {
			t.Fatalf("no marker; console:\n%s", e.vms.ConsoleTail(v.ID, 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
	status, out = e.api("POST", "/v1/vms/"+v.ID+"/stop", "", "")
	if status != 202 || !strings.Contains(out, `"state":"stopping"`) {
		t.Fatalf("stop: %d %s", status, out)
	}
	e.waitFor(t, v.ID, "stopped", 30*time.Second)
	if status, _ := e.api("DELETE", "/v1/vms/"+v.ID, "", ""); status != 204 {
		t.Errorf("delete after stop: %d", status)
	}
	// A kernel that is not in the image directories is refused at create, naming the field
	// and path.
	status, out = e.api("POST", "/v1/vms", `{"name":"nokernel","kernel":"/nonexistent/vmlinuz","provision":false}`, "")
	if status != 400 || !strings.Contains(out, `"kernel":"/nonexistent/vmlinuz is outside the image directories`) {
		t.Errorf("create with a kernel outside the image dirs: %d %s", status, out)
	}
	missing := filepath.Join(qemutest.ImageDirs()[1], "hearth-no-such-kernel")
	status, out = e.api("POST", "/v1/vms", `{"name":"nokernel","kernel":"`+missing+`","provision":false}`, "")
	if status != 400 || !strings.Contains(out, `"kernel":"`+missing+` does not exist"`) {
		t.Errorf("create with a missing kernel: %d %s", status, out)
	}
}

func TestUILifecycleButtons(t *testing.T) {
	e, body := lifecycleEnv(t)
	_, out := e.api("POST", "/v1/vms", body, "")
	var v vmJSON
	json.Unmarshal([]byte(out), &v)
	e.signIn()
	_, _, page := e.do("GET", "/vms/"+v.ID, "", nil)
	if !strings.Contains(page, `data-testid="vm-start"`) || strings.Contains(page, `data-testid="vm-stop"`) {
		t.Fatal("a defined VM's page does not offer Start (only)")
	}
	htmx := map[string]string{"HX-Request": "true"}
	status, hdr, panel := e.form("/vms/"+v.ID+"/start", url.Values{}, htmx)
	if status != 200 || !strings.Contains(panel, `data-state="running"`) || !strings.Contains(panel, `data-testid="vm-stop"`) || hdr.Get("HX-Trigger") != "vm-changed" {
		t.Fatalf("start button: %d\n%s", status, panel)
	}
	// Clicking Start again (a stale page) shows the refusal in the panel.
	status, _, panel = e.form("/vms/"+v.ID+"/start", url.Values{}, htmx)
	if status != 409 || !strings.Contains(panel, "is running") {
		t.Errorf("stale start: %d\n%s", status, panel)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		// While it runs the page's terminal shows the console (the panel says so and
		// shows no tail); the log has the guest's marker.
		_, _, panel = e.do("GET", "/vms/"+v.ID+"/status", "", htmx)
		if strings.Contains(e.vms.ConsoleTail(v.ID, 30), "HEARTH-MARKER") && strings.Contains(panel, `data-console="true"`) &&
			!strings.Contains(panel, `data-testid="console-tail"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the console never showed the marker (log: %q):\n%s", e.vms.ConsoleTail(v.ID, 5), panel)
		}
		time.Sleep(200 * time.Millisecond)
	}
	status, _, panel = e.form("/vms/"+v.ID+"/stop", url.Values{}, htmx)
	if status != 200 || !strings.Contains(panel, `data-state="stopping"`) {
		t.Errorf("stop button: %d\n%s", status, panel)
	}
	if got := e.waitFor(t, v.ID, "stopped", 30*time.Second); got.State != string(app.VMStopped) {
		t.Errorf("state %s", got.State)
	}
}
