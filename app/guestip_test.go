package app

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestGuestIPRule(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Minute)
	none := GuestIPState{}
	guest := GuestIPState{IP: "10.0.0.2", Source: SourceCallback, UpdatedAt: t0, RegisteredIP: "10.0.0.2", RegisteredSource: SourceCallback, RegisteredAt: t0}
	override := GuestIPState{IP: "10.0.0.99", Source: SourceManual, UpdatedAt: t0, RegisteredIP: "10.0.0.2", RegisteredSource: SourceAgent, RegisteredAt: t0}
	bareManual := GuestIPState{IP: "10.0.0.99", Source: SourceManual, UpdatedAt: t0}
	for _, c := range []struct {
		name   string
		from   GuestIPState
		change GuestIPChange
		want   GuestIPState
		note   string
	}{
		{"the first registration takes effect", none, GuestIPChange{"10.0.0.2", SourceCallback, t1},
			GuestIPState{IP: "10.0.0.2", Source: SourceCallback, UpdatedAt: t1, RegisteredIP: "10.0.0.2", RegisteredSource: SourceCallback, RegisteredAt: t1}, ""},
		{"a new registration replaces the guest's", guest, GuestIPChange{"10.0.0.3", SourceAgent, t1},
			GuestIPState{IP: "10.0.0.3", Source: SourceAgent, UpdatedAt: t1, RegisteredIP: "10.0.0.3", RegisteredSource: SourceAgent, RegisteredAt: t1}, ""},
		{"a registration under an override is remembered, the override stays", override, GuestIPChange{"10.0.0.4", SourceCallback, t1},
			GuestIPState{IP: "10.0.0.99", Source: SourceManual, UpdatedAt: t0, RegisteredIP: "10.0.0.4", RegisteredSource: SourceCallback, RegisteredAt: t1},
			"; the manual 10.0.0.99 stays in effect"},
		{"an operator overrides", guest, GuestIPChange{"10.0.0.99", SourceManual, t1},
			GuestIPState{IP: "10.0.0.99", Source: SourceManual, UpdatedAt: t1, RegisteredIP: "10.0.0.2", RegisteredSource: SourceCallback, RegisteredAt: t0}, ""},
		{"clearing an override falls back to the registration", override, GuestIPChange{"", SourceManual, t1},
			GuestIPState{IP: "10.0.0.2", Source: SourceAgent, UpdatedAt: t0, RegisteredIP: "10.0.0.2", RegisteredSource: SourceAgent, RegisteredAt: t0},
			"; back to 10.0.0.2 registered by the guest (agent)"},
		{"clearing the guest's value forgets it", guest, GuestIPChange{"", SourceManual, t1}, none, ""},
		{"clearing an override with nothing beneath", bareManual, GuestIPChange{"", SourceManual, t1}, none, ""},
		{"the guest clears its own", guest, GuestIPChange{"", SourceAgent, t1}, none, ""},
		{"the guest clears under an override: forgotten, the override stays", override, GuestIPChange{"", SourceCallback, t1},
			GuestIPState{IP: "10.0.0.99", Source: SourceManual, UpdatedAt: t0}, "; the manual 10.0.0.99 stays in effect"},
		{"clearing nothing", none, GuestIPChange{"", SourceManual, t1}, none, ""},
	} {
		got, note := c.from.Apply(c.change)
		if diff := cmp.Diff(c.want, got); diff != "" || note != c.note {
			t.Errorf("%s: (-want +got)\n%s note %q, want %q", c.name, diff, note, c.note)
		}
	}
}

// TestGuestIPRuleSequence walks the story the e2e tells: register, override, register
// again beneath it, clear (back to the newest registration), clear again (forgotten).
func TestGuestIPRuleSequence(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	var s GuestIPState
	step := func(ip string, src GuestIPSource) string {
		at = at.Add(time.Second)
		var note string
		s, note = s.Apply(GuestIPChange{ip, src, at})
		return note
	}
	step("10.0.0.2", SourceCallback)
	step("10.0.0.99", SourceManual)
	step("10.0.0.5", SourceAgent)
	if s.IP != "10.0.0.99" || s.RegisteredIP != "10.0.0.5" {
		t.Fatalf("after a registration under the override: %+v", s)
	}
	if note := step("", SourceManual); s.IP != "10.0.0.5" || s.Source != SourceAgent || note == "" {
		t.Fatalf("after clearing the override: %+v %q", s, note)
	}
	if step("", SourceManual); s != (GuestIPState{}) {
		t.Fatalf("after clearing again: %+v", s)
	}
}
