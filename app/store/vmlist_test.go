package store_test

import (
	"context"
	"fmt"
	"sort"
	"testing"

	"hearth/app"
	"hearth/app/store"
	"hearth/internal/testkit/storetest"
)

// TestQueryVMsPages: pages by cursor visit every VM once in order, in both sorts and
// directions; the name filter takes LIKE's wildcards literally; counts come by state.
func TestQueryVMsPages(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		states := []app.VMState{app.VMDefined, app.VMRunning, app.VMStopped}
		var names []string
		for i := 0; i < 57; i++ {
			v := newVM(fmt.Sprintf("id%03d", (i*37)%57), fmt.Sprintf("web-%02d", i))
			if i%10 == 3 {
				v.Name = fmt.Sprintf("db-%d", i)
			}
			v.State = states[i%3]
			mustCreate(t, db, v)
			names = append(names, v.Name)
		}
		walk := func(q app.VMQuery) []string {
			var got []string
			for pages := 0; pages < 100; pages++ {
				page, err := db.QueryVMs(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				for _, v := range page {
					got = append(got, v.Name)
				}
				if len(page) < q.Limit {
					return got
				}
				k := app.KeyOf(page[len(page)-1], q.Sort)
				q.After = &k
			}
			t.Fatal("paging does not end")
			return nil
		}
		byName := append([]string(nil), names...)
		sort.Strings(byName)
		if got := walk(app.VMQuery{Sort: "name", Limit: 10}); fmt.Sprint(got) != fmt.Sprint(byName) {
			t.Errorf("by name:\n got %v\nwant %v", got, byName)
		}
		rev := append([]string(nil), byName...)
		sort.Sort(sort.Reverse(sort.StringSlice(rev)))
		if got := walk(app.VMQuery{Sort: "name", Desc: true, Limit: 7}); fmt.Sprint(got) != fmt.Sprint(rev) {
			t.Errorf("by name, descending:\n got %v\nwant %v", got, rev)
		}
		// Newest first: the reverse of creation, whatever the timestamps' ties (ids break them).
		created := walk(app.VMQuery{Sort: "created", Limit: 8})
		oldest := walk(app.VMQuery{Sort: "created", Desc: true, Limit: 8})
		if len(created) != 57 || len(oldest) != 57 {
			t.Fatalf("by creation: %d and %d VMs", len(created), len(oldest))
		}
		for i := range created {
			if created[i] != oldest[56-i] {
				t.Fatalf("newest first is not the reverse of oldest first at %d: %v / %v", i, created, oldest)
			}
		}
		if got := walk(app.VMQuery{Name: "DB-", Limit: 50}); len(got) != 6 {
			t.Errorf("name contains db-: %v", got)
		}
		for _, part := range []string{"%", "_", `\`, "web_0"} {
			if got := walk(app.VMQuery{Name: part, Limit: 50}); len(got) != 0 {
				t.Errorf("%q matched %v: a wildcard was not taken literally", part, got)
			}
		}
		running := walk(app.VMQuery{States: []app.VMState{app.VMRunning}, Limit: 5})
		if len(running) != 19 {
			t.Errorf("running: %d", len(running))
		}
		rest, err := db.QueryVMs(ctx, app.VMQuery{Not: []app.VMState{app.VMRunning}, Offset: 30, Limit: 50})
		if err != nil || len(rest) != 38-30 {
			t.Errorf("not running from offset 30: %d %v", len(rest), err)
		}
		counts, err := db.CountVMs(ctx, "web")
		if err != nil || counts[app.VMDefined]+counts[app.VMRunning]+counts[app.VMStopped] != 51 || counts[app.VMRunning] != 17 {
			t.Errorf("counts of web: %v %v", counts, err)
		}
	})
}
