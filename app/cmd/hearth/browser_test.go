package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"hearth/app/testenv"
)

// chromium finds Debian's chromium (or another Chrome) to drive.
func chromium(tb testing.TB) string {
	tb.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testenv.Missing(tb, "Chromium", "no chromium on PATH (apt-get install chromium)")
	return ""
}

// browser starts a headless Chromium with the flags this machine needs (no sandbox as root,
// no background traffic to the outside) and returns a context for chromedp actions.
func browser(tb testing.TB) context.Context {
	tb.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(tb)),
		chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(tb.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	ctx, cancelC := context.WithTimeout(ctx, 90*time.Second)
	tb.Cleanup(func() { cancelC(); cancelB(); cancelA() })
	return ctx
}

// screenshot keeps a picture of the page for a person to look at when the test fails,
// under HEARTH_ARTIFACTS (or the test's temp dir).
func screenshot(t *testing.T, ctx context.Context, name string) {
	dir := os.Getenv("HEARTH_ARTIFACTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	os.MkdirAll(dir, 0o755)
	p := filepath.Join(dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err == nil {
		t.Logf("screenshot: %s", p)
	}
}

// page drives one browser tab, failing the test with a screenshot on any error.
type page struct {
	t    *testing.T
	ctx  context.Context
	name string // prefix of failure screenshots
}

func (p page) fail(step string, err error) {
	p.t.Helper()
	screenshot(p.t, p.ctx, "fail-"+p.name+"-"+strings.ReplaceAll(step, " ", "-"))
	loc, _ := chromedp.Run(p.ctx, chromedp.Location())
	p.t.Fatalf("%s: %v (at %s)", step, err, loc)
}

func (p page) step(step string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, actions...); err != nil {
		p.fail(step, err)
	}
}

func (p page) text(step, sel string) string {
	p.t.Helper()
	s, err := chromedp.Run(p.ctx, chromedp.Text(sel))
	if err != nil {
		p.fail(step, err)
	}
	return s
}

func (p page) eval(step, js string) string {
	p.t.Helper()
	s, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](js))
	if err != nil {
		p.fail(step, err)
	}
	return s
}

// TestBrowserGuestIPOverride is the operator's path through the UI in a real browser: sign
// in, create a VM, override its guest IP through the form, and see the new value and its
// source on the page without a reload (htmx swapped the panel only).
func TestBrowserGuestIPOverride(t *testing.T) {
	ctx := browser(t)
	m, _ := startMain(t, map[string]string{"HEARTH_ADMIN_PASSWORD": "browser-pw-1"})
	base := m.URL()
	pg := page{t: t, ctx: ctx, name: "override"}
	step, text, eval := pg.step, pg.text, pg.eval
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
	screenshot(t, ctx, "vm-page-top")
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
	screenshot(t, ctx, "vm-page")

	// The list shows it too, and after a reload the value is still there (it was stored).
	step("list shows the IP",
		chromedp.Navigate(base+"/vms"),
		chromedp.WaitVisible(`tr[data-vm="browser-vm"]`),
	)
	if row := text("read row", `tr[data-vm="browser-vm"]`); !strings.Contains(row, "192.168.77.10") || !strings.Contains(row, "manual") {
		t.Errorf("list row: %q", row)
	}
	screenshot(t, ctx, "vm-list")
}
