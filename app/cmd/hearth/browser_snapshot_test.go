package main

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"hearth/internal/testkit/browsertest"
	"hearth/internal/testkit/qemutest"
)

// TestBrowserSnapshot: on the VM page, Pause freezes a real guest (the badge and the note
// say so, Resume is offered), Resume lets it go on; Take snapshot lists the snapshot with
// its size; Restore asks first (the VM runs: it is stopped first) and brings the guest
// back to it: a file written after the snapshot is gone, one written before is there.
func TestBrowserSnapshot(t *testing.T) {
	qemutest.QEMU(t)
	kernel, mods := qemutest.Kernel(t)
	initrd := qemutest.InitramfsWith(t, mods, qemutest.ShellInit, nil)
	ctx := browsertest.New(t, 120*time.Second)
	m, _ := startMain(t, map[string]string{"HEARTH_ADMIN_PASSWORD": "browser-pw-3", "HEARTH_HYPERVISOR": "qemu"})
	token, err := m.Auth.CreateAPIToken(t.Context(), "ui", cliActor)
	if err != nil {
		t.Fatal(err)
	}
	api := func(method, path, body string) (int, map[string]any) {
		return call(t, m.URL(), token, method, path, body)
	}
	body, _ := json.Marshal(map[string]any{"name": "ui-snap", "kernel": kernel, "initrd": initrd, "provision": false,
		"boot_args": "console=ttyS0 panic=-1 rdinit=/init", "memory_mib": 256})
	status, vm := api("POST", "/v1/vms", string(body))
	if status != 201 {
		t.Fatalf("create: %d %v", status, vm)
	}
	id := vm["id"].(string)
	if status, out := api("POST", "/v1/vms/"+id+"/start", ""); status != 200 {
		t.Fatalf("start: %d %v", status, out)
	}
	t.Cleanup(func() { exec.Command("pkill", "-KILL", "-f", "hearth-"+id).Run() })
	hub, err := m.VMs.Console(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := hub.Join()
	waitBooted(t, m, id)
	shell(t, hub, v, "\necho before > /before")

	pg := browsertest.Page{T: t, Ctx: ctx, Name: "snapshot"}
	step, waitText := pg.Step, pg.WaitText
	step("sign in",
		chromedp.Navigate(m.URL()+"/vms/"+id),
		chromedp.WaitVisible(`[data-testid=sign-in]`),
		chromedp.SendKeys(`#f-name`, "admin"),
		chromedp.SendKeys(`#f-password`, "browser-pw-3"),
	)
	step("submit the sign-in", chromedp.Click(`[data-testid=sign-in]`))
	step("the VM's page", chromedp.WaitVisible(`[data-testid=vm-pause]`))
	if s := pg.Text("no snapshots yet", `[data-testid=snapshots-empty]`); !strings.Contains(s, "No snapshots yet") {
		t.Errorf("empty snapshots panel says %q", s)
	}

	pg.ClickButton("pause", `[data-testid=vm-pause]`)
	step("paused", chromedp.WaitVisible(`#vm-status[data-state=paused]`))
	waitText("the page says what paused means", `[data-testid=paused-note]`, "The guest is frozen", 5*time.Second)
	browsertest.Screenshot(t, ctx, "vm-paused")
	pg.ClickButton("resume", `[data-testid=vm-resume]`)
	step("running again", chromedp.WaitVisible(`#vm-status[data-state=running]`))

	step("name the snapshot", chromedp.SetValue(`[data-testid=snapshot-name]`, "ui-first"))
	pg.ClickButton("take a snapshot", `[data-testid=snapshot-take]`)
	pg.WaitFor("the snapshot is listed ready", 60*time.Second, func() (bool, error) {
		return pg.Eval("snapshot row", `document.querySelector('[data-snapshot="ui-first"]')?.dataset.state || ''`) == "ready", nil
	})
	row := pg.Text("snapshot row", `[data-snapshot="ui-first"]`)
	t.Logf("snapshot row: %q", row)
	if !strings.Contains(row, "MiB") || !strings.Contains(row, " ms") {
		t.Errorf("the snapshot row lacks its size or pause time: %q", row)
	}
	browsertest.Screenshot(t, ctx, "vm-snapshot")
	shell(t, hub, v, "echo after > /after")

	// Restore asks first: the page's confirm says the running VM is stopped.
	pg.Eval("answer the confirm", `window.confirm = (msg) => { window.hearthConfirm = msg; return true }, ""`)
	pg.ClickButton("restore", `[data-testid=snapshot-restore-ui-first]`)
	pg.WaitFor("the confirm was asked", 10*time.Second, func() (bool, error) {
		return strings.Contains(pg.Eval("confirm text", `window.hearthConfirm || ''`), "it is stopped first"), nil
	})
	pg.WaitFor("restored and running", 60*time.Second, func() (bool, error) {
		entries, err := m.VMs.AuditLog(t.Context(), id, 20)
		for _, e := range entries {
			if strings.Contains(e.Detail, "restoring ui-snap from snapshot ui-first") {
				rec, err := m.VMs.Get(t.Context(), id)
				return err == nil && rec.State == "running" && m.VMs.Interactive(id) &&
					pg.Eval("state", `document.querySelector('#vm-status').dataset.state`) == "running", err
			}
		}
		return false, err
	})
	rhub, err := m.VMs.Console(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	rv, _ := rhub.Join()
	got := shell(t, rhub, rv, "\nls /before /after 2>&1")
	if !strings.Contains(got, "/before") || !strings.Contains(got, "/after: No such file") {
		t.Errorf("after the restore from the page: want /before and no /after:\n%s", got)
	}
	waitText("the activity list tells the restore", `#activity`, "restoring ui-snap from snapshot ui-first", 20*time.Second)
}
