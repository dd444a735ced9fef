package main

import (
	"net/url"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"hearth/internal/testkit/browsertest"
)

// TestBrowserSignInRedirectStaysHome reproduces the open redirect in Chromium: a sign-in
// link whose next= hides another host behind a tab, a newline or a backslash (browsers drop
// the first two and read the third as "/") must land on the manager after sign-in. The
// "other host" is a loopback address nothing listens on, so a failure stays on this machine.
func TestBrowserSignInRedirectStaysHome(t *testing.T) {
	ctx := browsertest.New(t, 90*time.Second)
	m, _ := startMain(t, map[string]string{"HEARTH_ADMIN_PASSWORD": "browser-pw-1"})
	base, _ := url.Parse(m.URL())
	pg := browsertest.Page{T: t, Ctx: ctx, Name: "redirect"}
	nexts := []string{"/%09/127.0.0.2:65000/x", "/%0A/127.0.0.2:65000/x", "/%5C127.0.0.2:65000/x", "/%0D%0A/127.0.0.2:65000/x", "/%09%09/127.0.0.2:65000"}
	check := func(i int, next string) {
		t.Helper()
		loc, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`window.location.href`))
		if u, err := url.Parse(loc); err != nil || u.Host != base.Host {
			t.Errorf("case %d: next=%s led to %q, not to %s", i, next, loc, base.Host)
		}
	}
	// Signing in redirects to next=...
	pg.Step("sign in with next="+nexts[0],
		chromedp.Navigate(base.String()+"/login?next="+nexts[0]),
		chromedp.WaitVisible(`[data-testid=sign-in]`),
		chromedp.SendKeys(`#f-name`, "admin"),
		chromedp.SendKeys(`#f-password`, "browser-pw-1"),
		chromedp.Click(`[data-testid=sign-in]`),
		chromedp.Sleep(500*time.Millisecond),
	)
	check(0, nexts[0])
	// ...and so does the sign-in page of someone already signed in.
	for i, next := range nexts {
		// A redirect elsewhere fails to load (nothing listens there): the location tells.
		chromedp.Do(ctx, chromedp.Navigate(base.String()+"/login?next="+next), chromedp.Sleep(300*time.Millisecond))
		check(i, next)
	}
}
