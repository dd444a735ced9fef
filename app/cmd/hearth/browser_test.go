package main

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"hearth/internal/testkit/browsertest"
)

// TestBrowserGuestIPOverride is the operator's path through the UI in a real browser: sign
// in, create a VM, override its guest IP through the form, and see the new value and its
// source on the page without a reload (htmx swapped the panel only).
func TestBrowserGuestIPOverride(t *testing.T) {
	ctx := browsertest.New(t, 90*time.Second)
	m, _ := startMain(t, map[string]string{"HEARTH_ADMIN_PASSWORD": "browser-pw-1"})
	base := m.URL()
	pg := browsertest.Page{T: t, Ctx: ctx, Name: "override"}
	step, text, eval := pg.Step, pg.Text, pg.Eval
	step("sign in",
		chromedp.Navigate(base+"/vms"),
		chromedp.WaitVisible(`[data-testid=sign-in]`),
		chromedp.SendKeys(`#f-name`, "admin"),
		chromedp.SendKeys(`#f-password`, "browser-pw-1"),
		chromedp.Click(`[data-testid=sign-in]`),
		chromedp.WaitVisible(`[data-testid=new-vm]`),
	)
	if who := text("who am I", `[data-testid=whoami]`); who != "admin" {
		t.Errorf("signed in as %q", who)
	}

	step("create a VM",
		chromedp.Click(`[data-testid=new-vm]`),
		chromedp.WaitVisible(`#f-name`),
		chromedp.SendKeys(`#f-name`, "browser-vm"),
		chromedp.SetValue(`#f-vcpus`, "2"),
		chromedp.SetValue(`#f-memory_mib`, "512"),
		chromedp.Click(`[data-testid=vm-submit]`),
		chromedp.WaitVisible(`[data-testid=vm-name]`),
	)
	if name := text("read name", `[data-testid=vm-name]`); name != "browser-vm" {
		t.Fatalf("VM page shows %q", name)
	}

	// A marker on window survives only if the page is not reloaded: the override must swap
	// the panel in place.
	browsertest.Screenshot(t, ctx, "vm-page-top")
	eval("mark page", `window.__hearthMarker = "yes"`)

	step("bad address shows its error in the form",
		chromedp.SendKeys(`#f-guest_ip`, "127.0.0.1"),
		chromedp.Click(`[data-testid=guest-ip-save]`),
		chromedp.WaitVisible(`[data-error-for=guest_ip]`),
	)
	if errText := text("read error", `[data-error-for=guest_ip]`); !strings.Contains(errText, "loopback") {
		t.Errorf("error shown: %q, want it to say loopback", errText)
	}

	eval("clear input", `document.querySelector("#f-guest_ip").value = ""`)
	step("override the guest IP",
		chromedp.SendKeys(`#f-guest_ip`, "192.168.77.10"),
		chromedp.Click(`[data-testid=guest-ip-save]`),
		chromedp.WaitVisible(`#guest-ip-panel [data-guest-ip="192.168.77.10"]`),
	)
	if source := text("read source", `#guest-ip-panel [data-source]`); source != "manual" {
		t.Errorf("source shown: %q, want manual", source)
	}
	if eval("check marker", `String(window.__hearthMarker)`) != "yes" {
		t.Error("the page reloaded; the override should swap only the guest-IP panel")
	}

	step("activity shows the override without a reload",
		chromedp.WaitVisible(`#activity li:first-child`),
	)
	for i := 0; ; i++ {
		if a := text("read activity", `#activity li:first-child`); strings.Contains(a, "set guest IP 192.168.77.10 (manual)") {
			break
		} else if i == 50 {
			t.Fatalf("activity never showed the override; first entry: %q", a)
		}
		time.Sleep(100 * time.Millisecond)
	}
	browsertest.Screenshot(t, ctx, "vm-page")

	// The list shows it too, and after a reload the value is still there (it was stored).
	step("list shows the IP",
		chromedp.Navigate(base+"/vms"),
		chromedp.WaitVisible(`tr[data-vm="browser-vm"]`),
	)
	if row := text("read row", `tr[data-vm="browser-vm"]`); !strings.Contains(row, "192.168.77.10") || !strings.Contains(row, "manual") {
		t.Errorf("list row: %q", row)
	}
	browsertest.Screenshot(t, ctx, "vm-list")
}
