// Package browsertest drives a real headless Chromium (Debian's chromium) for tests, with
// the flags this machine needs and a screenshot of the page whenever a step fails.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"hearth/internal/testkit/testenv"
)

// Chromium finds Debian's chromium (or another Chrome) to drive.
func Chromium(tb testing.TB) string {
	tb.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testenv.Missing(tb, "Chromium", "no chromium on PATH (apt-get install chromium)")
	return ""
}

// New starts a headless Chromium (no sandbox as root, no background traffic to the outside)
// and returns a context for chromedp actions that ends after timeout or with the test.
func New(tb testing.TB, timeout time.Duration) context.Context {
	tb.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(Chromium(tb)),
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
	ctx, cancelC := context.WithTimeout(ctx, timeout)
	tb.Cleanup(func() { cancelC(); cancelB(); cancelA() })
	return ctx
}

// ArtifactsDir is where screenshots and logs are kept for a person to look at: the
// HEARTH_ARTIFACTS folder, or "" when none is set.
func ArtifactsDir() string { return os.Getenv("HEARTH_ARTIFACTS") }

// Screenshot keeps a full-page picture under ArtifactsDir (nothing when it is unset).
func Screenshot(t testing.TB, ctx context.Context, name string) {
	dir := ArtifactsDir()
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

// Page drives one browser tab, failing the test with a screenshot on any error.
type Page struct {
	T    testing.TB
	Ctx  context.Context
	Name string // prefix of failure screenshots
}

// Fail takes a screenshot named after the step and fails the test with where the tab was.
func (p Page) Fail(step string, err error) {
	p.T.Helper()
	Screenshot(p.T, p.Ctx, "fail-"+p.Name+"-"+strings.ReplaceAll(step, " ", "-"))
	loc, _ := chromedp.Run(p.Ctx, chromedp.Location())
	p.T.Fatalf("%s: %v (at %s)", step, err, loc)
}

// Step runs actions, failing the test on the first error.
func (p Page) Step(step string, actions ...chromedp.Action[chromedp.Void]) {
	p.T.Helper()
	if err := chromedp.Do(p.Ctx, actions...); err != nil {
		p.Fail(step, err)
	}
}

// Text is the visible text of the first element matching sel.
func (p Page) Text(step, sel string) string {
	p.T.Helper()
	s, err := chromedp.Run(p.Ctx, chromedp.Text(sel))
	if err != nil {
		p.Fail(step, err)
	}
	return s
}

// Eval evaluates a JavaScript expression that yields a string.
func (p Page) Eval(step, js string) string {
	p.T.Helper()
	s, err := chromedp.Run(p.Ctx, chromedp.Evaluate[string](js))
	if err != nil {
		p.Fail(step, err)
	}
	return s
}

// WaitFor polls until ok accepts the page (errors from the check count as "not yet") and
// fails the step after within. It returns how long it waited.
func (p Page) WaitFor(step string, within time.Duration, ok func() (bool, error)) time.Duration {
	p.T.Helper()
	start := time.Now()
	var last error
	for {
		done, err := ok()
		if done {
			return time.Since(start)
		}
		if err != nil {
			last = err
		}
		if time.Since(start) > within {
			p.Fail(step+" (timed out after "+within.String()+")", last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// WaitText waits until the text of sel contains want.
func (p Page) WaitText(step, sel, want string, within time.Duration) time.Duration {
	p.T.Helper()
	return p.WaitFor(step, within, func() (bool, error) {
		s, err := chromedp.Run(p.Ctx, chromedp.Text(sel))
		return err == nil && strings.Contains(s, want), err
	})
}

// Type types text into the focused element as text input (Input.insertText), the way an
// IME or a paste delivers it. Key-by-key events (chromedp.SendKeys) reach a terminal such
// as xterm.js twice, as a keydown and as a keypress: an operator's keyboard does not.
// Text input carries no Enter: follow it with chromedp.KeyEvent("").
func Type(text string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, input.InsertText, input.InsertTextParams{Text: text})
		return err
	})
}

// ClickButton clicks the enabled element sel (a button of a panel htmx swaps on a poll) in
// one script, tried until it is there: a node found a moment ago can be gone by the click.
func (p Page) ClickButton(step, sel string) {
	p.T.Helper()
	p.WaitFor(step, 15*time.Second, func() (bool, error) {
		ok, err := chromedp.Run(p.Ctx, chromedp.Evaluate[bool](`(() => { const b = document.querySelector(`+"`"+sel+"`"+`);
			if (!b || b.disabled) return false; b.click(); return true })()`))
		return err == nil && ok, nil
	})
}
