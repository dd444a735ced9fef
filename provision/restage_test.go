package provision

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"hearth/app"
	"hearth/app/store"
	"hearth/internal/testkit/cloudinittest"
	"hearth/internal/testkit/storetest"
)

var regTokenRE = regexp.MustCompile(`HEARTH_REGISTRATION_TOKEN=(\S+)`)

// TestRenameRestagesSeed reproduces the stale hostname: renaming a provisioned VM renders
// its seed again with the new name, as a new cloud-init instance (so a guest that booted
// before applies it), with the same host key and agent token and a new registration token
// that works where the old one no longer does.
func TestRenameRestagesSeed(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s, p := newProvisioned(t, db, []byte("\x7fELF pretend agent"))
		v, oldToken, err := s.Create(ctx, app.VMSpec{Name: "web-1"}, operator)
		if err != nil {
			t.Fatal(err)
		}
		for i, name := range []string{"web-2", "web-3"} {
			n := name
			if _, err := s.Update(ctx, v.ID, app.VMUpdate{Name: &n}, operator); err != nil {
				t.Fatalf("rename to %s: %v", name, err)
			}
			files := p.seed(t, s, v.ID)
			md, ud := string(files["meta-data"]), string(files["user-data"])
			iid := v.ID + "-r" + string(rune('1'+i))
			if !strings.Contains(md, `instance-id: "`+iid+`"`) || !strings.Contains(md, `local-hostname: "`+name+`"`) {
				t.Errorf("meta-data after rename to %s:\n%s", name, md)
			}
			for _, want := range []string{`hostname: "` + name + `"`, `ed25519_public: "` + v.HostKey + `"`, "HEARTH_AGENT_TOKEN=" + v.AgentToken, "HEARTH_VM_ID=" + v.ID} {
				if !strings.Contains(ud, want) {
					t.Errorf("user-data after rename to %s lacks %q", name, want)
				}
			}
			m := regTokenRE.FindStringSubmatch(ud)
			if m == nil || m[1] == oldToken {
				t.Fatalf("registration token in the new seed: %v", m)
			}
			if id, err := s.GuestVM(ctx, m[1]); err != nil || id != v.ID {
				t.Errorf("the new seed's token: %q %v", id, err)
			}
			if _, err := s.GuestVM(ctx, oldToken); app.ErrorCode(err) != app.EUNAUTHORIZED {
				t.Errorf("the token of the seed before: %v", err)
			}
			oldToken = m[1]
			cloudinittest.Schema(t, files["user-data"])
		}
		got, _ := s.Get(ctx, v.ID)
		if got.Name != "web-3" || got.HostKey != v.HostKey {
			t.Errorf("VM after renames: %s %q", got.Name, got.HostKey)
		}
		log, _ := s.AuditLog(ctx, v.ID, 1)
		if !strings.Contains(log[0].Detail, "renamed web-2 to web-3; the guest takes the new name at its next boot") {
			t.Errorf("audit: %q", log[0].Detail)
		}

		// Secrets that do not open (another data dir's seal key) refuse the rename, and
		// nothing changes.
		if err := db.SetSeedSecrets(ctx, v.ID, "v1:bm90IHNlYWxlZCBieSB0aGlzIGtleQ"); err != nil {
			t.Fatal(err)
		}
		n := "web-4"
		if _, err := s.Update(ctx, v.ID, app.VMUpdate{Name: &n}, operator); app.ErrorCode(err) != app.ECONFLICT || !strings.Contains(err.Error(), "cannot rename web-3") {
			t.Errorf("rename with a broken seed: %v", err)
		}
		if got, _ := s.Get(ctx, v.ID); got.Name != "web-3" {
			t.Errorf("name after a refused rename: %s", got.Name)
		}
		if id, err := s.GuestVM(ctx, oldToken); err != nil || id != v.ID {
			t.Errorf("a refused rename changed the token: %q %v", id, err)
		}
		// Other edits of a provisioned VM leave its seed alone.
		four := 4
		if _, err := s.Update(ctx, v.ID, app.VMUpdate{VCPUs: &four}, operator); err != nil {
			t.Errorf("resize with a broken seed: %v", err)
		}
	})
}
