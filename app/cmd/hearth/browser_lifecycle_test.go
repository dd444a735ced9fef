package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"hearth/internal/testkit/browsertest"
	"hearth/internal/testkit/qemutest"
)

// TestBrowserLifecycle: a VM created in the UI starts, shows running with the guest's
// console in the page's terminal, answers a command typed there, stops (the page then says
// so and shows the last console lines) and is deleted, on QEMU here (software emulation).
func TestBrowserLifecycle(t *testing.T) {
	qemutest.QEMU(t)
	kernel, mods := qemutest.Kernel(t)
	initrd := qemutest.InitramfsWith(t, mods, qemutest.ShellInit, nil)
	ctx := browsertest.New(t, 90*time.Second)
	m, _ := startMain(t, map[string]string{"HEARTH_ADMIN_PASSWORD": "browser-pw-2", "HEARTH_HYPERVISOR": "qemu"})
	base := m.URL()
	pg := browsertest.Page{T: t, Ctx: ctx, Name: "lifecycle"}
	step, text, fail, waitText := pg.Step, pg.Text, pg.Fail, pg.WaitText
	step("sign in",
		chromedp.Navigate(base+"/vms/new"),
		chromedp.WaitVisible(`[data-testid=sign-in]`),
		chromedp.SendKeys(`#f-name`, "admin"),
		chromedp.SendKeys(`#f-password`, "browser-pw-2"),
	)
	// The sign-in form has a #f-name too: wait for a field only the VM form has, or the
	// next step may fill the sign-in page on its way out.
	step("submit the sign-in", chromedp.Click(`[data-testid=sign-in]`))
	step("the new-VM form", chromedp.WaitVisible(`#f-vcpus`))
	step("create a bootable VM from its own files (Advanced)",
		chromedp.SendKeys(`#f-name`, "ui-guest"),
		chromedp.Click(`[data-testid=vm-advanced] summary`),
		chromedp.WaitVisible(`#f-kernel`),
		chromedp.SendKeys(`#f-kernel`, kernel),
		chromedp.SendKeys(`#f-initrd`, initrd),
		chromedp.SetValue(`#f-boot_args`, "console=ttyS0 panic=-1 rdinit=/init"),
	)
	// The click navigates: waiting for the next page in the same run of actions hangs
	// chromedp here, so it is a step of its own.
	step("submit", chromedp.Click(`[data-testid=vm-submit]`))
	pg.WaitFor("the VM's page", 30*time.Second, func() (bool, error) {
		// Not there yet: say where the browser is and what it shows, for the failure.
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('[data-testid=vm-start]') ? "" :
			location.pathname + ": " + document.body.innerText.slice(0, 400)`))
		if err == nil && s != "" {
			err = errors.New(s)
		}
		return err == nil, err
	})
	start := time.Now()
	pg.ClickButton("start", `[data-testid=vm-start]`)
	step("running", chromedp.WaitVisible(`#vm-status[data-state=running]`))
	waitText("the terminal shows the guest", `#vm-terminal .xterm-rows`, "HEARTH-MARKER", 90*time.Second)
	t.Logf("UI start click to marker in the page's terminal: %.1f s", time.Since(start).Seconds())
	// Type into the xterm (its hidden textarea takes the keys); the shell's answer, joined
	// from two halves, is not an echo of what was typed.
	typed, printed := marker("UI-")
	step("type into the terminal", chromedp.Click(`#vm-terminal`), browsertest.Type(typed), chromedp.KeyEvent("\r"))
	waitText("the guest answers in the terminal", `#vm-terminal .xterm-rows`, printed, 60*time.Second)
	if st := pg.Eval("terminal status", `document.querySelector('[data-testid=terminal-status]').dataset.state`); st != "live" {
		t.Errorf("the terminal's status says %q while connected", st)
	}
	browsertest.Screenshot(t, ctx, "vm-running")
	if s := text("badge", `#vm-status [data-state]`); s != "running" {
		t.Errorf("badge says %q", s)
	}
	if d := pg.Eval("Delete while running", `String(document.querySelector('[data-testid=vm-delete]').disabled)`); d != "true" {
		t.Errorf("Delete is enabled while the VM runs (%s)", d)
	}
	// A VM restart: the terminal reconnects by itself to the new run's console.
	pg.ClickButton("restart", `[data-testid=vm-restart]`)
	pg.WaitFor("the terminal shows the new boot, not the old session", 120*time.Second, func() (bool, error) {
		rows := pg.Eval("terminal rows", `document.querySelector('#vm-terminal .xterm-rows')?.innerText || ''`)
		return strings.Contains(rows, "HEARTH-MARKER") && !strings.Contains(rows, printed) &&
			pg.Eval("terminal status", `document.querySelector('[data-testid=terminal-status]').dataset.state`) == "live", nil
	})
	typed, printed = marker("UI2-")
	step("type after the restart", chromedp.Click(`#vm-terminal`), browsertest.Type(typed), chromedp.KeyEvent("\r"))
	waitText("the new run answers", `#vm-terminal .xterm-rows`, printed, 60*time.Second)
	pg.ClickButton("stop", `[data-testid=vm-stop]`)
	waitText("stopped", `#vm-status [data-state]`, "stopped", 60*time.Second)
	waitText("the page says the VM is stopped, with its last lines", `[data-testid=console-tail]`, "The VM is stopped — its last console lines:", 10*time.Second)
	waitText("the terminal says so too", `[data-testid=terminal-status]`, "the VM is stopped", 10*time.Second)
	if tail := text("last lines", `[data-testid=console]`); !strings.Contains(tail, printed) || strings.Contains(tail, "\x1b") {
		t.Errorf("the stopped VM's last lines: %q", tail)
	}
	// Delete follows the state without a reload (the status poll sends it out of band).
	pg.WaitFor("Delete enabled after the stop", 10*time.Second, func() (bool, error) {
		return pg.Eval("Delete after the stop", `String(document.querySelector('[data-testid=vm-delete]').disabled)`) == "false", nil
	})
	// Delete through the page's own form (a plain post, without htmx's confirm dialog).
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector('form[action$="/delete"]').submit(), true`)); err != nil {
		fail("delete", err)
	}
	step("back on the list", chromedp.WaitVisible(`[data-testid=new-vm]`))
	if s := text("list", `#vm-list`); strings.Contains(s, "ui-guest") {
		t.Errorf("the deleted VM is still listed: %q", s)
	}
}
