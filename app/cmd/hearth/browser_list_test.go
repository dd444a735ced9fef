package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"hearth/app"
	"hearth/internal/testkit/browsertest"
)

// TestBrowserVMList: with 130 VMs the list shows pages of 50, the pager walks them, the
// search and the state filter narrow them, a column header sorts, and the polled partial
// keeps the page and the query it was opened with.
func TestBrowserVMList(t *testing.T) {
	ctx := browsertest.New(t, 90*time.Second)
	m, _ := startMain(t, map[string]string{"HEARTH_ADMIN_PASSWORD": "browser-pw-1"})
	bg := context.Background()
	for i := 0; i < 130; i++ {
		v := &app.VM{ID: fmt.Sprintf("list%04d", i), Name: fmt.Sprintf("fleet-%03d", i), State: app.VMDefined, VCPUs: 1, MemoryMiB: 128 + i,
			MAC: "02:00:00:00:00:02"}
		if i%10 == 0 {
			v.State = app.VMStopped
		}
		if err := m.DB.CreateVM(bg, v, "h"+v.ID, nil); err != nil {
			t.Fatal(err)
		}
	}
	base := m.URL()
	pg := browsertest.Page{T: t, Ctx: ctx, Name: "vm-list"}
	step, text, eval := pg.Step, pg.Text, pg.Eval
	step("sign in",
		chromedp.Navigate(base+"/vms"),
		chromedp.WaitVisible(`[data-testid=sign-in]`),
		chromedp.SendKeys(`#f-name`, "admin"),
		chromedp.SendKeys(`#f-password`, "browser-pw-1"),
		chromedp.Click(`[data-testid=sign-in]`),
		chromedp.WaitVisible(`[data-testid=vm-search]`),
	)
	rows := func(what string) []string {
		return strings.Fields(eval(what, `[...document.querySelectorAll("#vm-list tr[data-vm]")].map(r => r.dataset.vm).join(" ")`))
	}
	if got := rows("first page"); len(got) != 50 || got[0] != "fleet-000" || got[49] != "fleet-049" {
		t.Fatalf("first page: %d rows %v", len(got), got)
	}
	if s := text("pager", `[data-testid=shown]`); s != "1–50 of 130" {
		t.Errorf("pager says %q", s)
	}
	step("next page", chromedp.Click(`[data-testid=next]`))
	step("page 2 loaded", chromedp.WaitVisible(`[data-testid=prev]`))
	if got := rows("second page"); len(got) != 50 || got[0] != "fleet-050" {
		t.Errorf("second page: %v", got)
	}
	// The polled partial keeps page 2: after a poll the rows are the same.
	eval("mark the list", `document.querySelector("#vm-list").dataset.mark = "old"; ""`)
	pg.WaitFor("the list polls", 12*time.Second, func() (bool, error) {
		return eval("poll", `String(document.querySelector("#vm-list").dataset.mark)`) != "old", nil
	})
	if got := rows("second page after a poll"); len(got) != 50 || got[0] != "fleet-050" {
		t.Errorf("after a poll the list shows %v", got)
	}

	step("search", chromedp.SendKeys(`#vm-q`, "fleet-12"), chromedp.Submit(`#vm-q`))
	step("search results", chromedp.WaitVisible(`[data-testid=vm-search]`))
	pg.WaitFor("search applied", 5*time.Second, func() (bool, error) { return len(rows("search")) == 10, nil })
	if got := rows("search"); got[0] != "fleet-120" || got[9] != "fleet-129" {
		t.Errorf("search fleet-12: %v", got)
	}
	if v := eval("search box keeps the query", `document.querySelector("#vm-q").value`); v != "fleet-12" {
		t.Errorf("search box holds %q", v)
	}

	step("filter by state", chromedp.Navigate(base+"/vms"), chromedp.WaitVisible(`#vm-state`),
		chromedp.SetValue(`#vm-state`, "stopped"), chromedp.Submit(`#vm-q`))
	pg.WaitFor("state filter applied", 5*time.Second, func() (bool, error) { return len(rows("stopped")) == 13, nil })
	if tab := text("stopped tab", `[data-tab=stopped]`); !strings.Contains(tab, "13") {
		t.Errorf("stopped tab: %q", tab)
	}

	step("sort by name, descending", chromedp.Navigate(base+"/vms"), chromedp.WaitVisible(`[data-sort=name]`))
	step("click the name header", chromedp.Click(`[data-sort=name]`))
	pg.WaitFor("sorted Z→A", 5*time.Second, func() (bool, error) {
		got := rows("Z→A")
		return len(got) == 50 && got[0] == "fleet-129", nil
	})
	browsertest.Screenshot(t, ctx, "vm-list")
}
