package vm

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"hearth/app"
	"hearth/app/store"
	"hearth/internal/testkit/storetest"
)

var operator = app.Actor{Kind: app.ActorUser, Name: "admin", Addr: "127.0.0.1"}

func TestCreateDefaultsAndValidation(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := NewService(db, testRules(t), t.TempDir())
		vm, token, err := s.Create(ctx, app.VMSpec{Name: "web-1"}, operator)
		if err != nil {
			t.Fatal(err)
		}
		if vm.VCPUs != 1 || vm.MemoryMiB != 256 || vm.State != app.VMDefined {
			t.Errorf("defaults: %+v", vm)
		}
		if !strings.HasPrefix(token, app.PrefixRegistrationToken) || len(token) < 40 {
			t.Errorf("registration token %q looks weak", token)
		}
		if !regexp.MustCompile(`^[0-9a-f][2367abef](:[0-9a-f]{2}){5}$`).MatchString(vm.MAC) {
			t.Errorf("MAC %q is not a locally administered unicast address", vm.MAC)
		}
		if id, err := s.GuestVM(ctx, token); err != nil || id != vm.ID {
			t.Errorf("own token: %q %v", id, err)
		}

		_, _, err = s.Create(ctx, app.VMSpec{Name: "Bad_Name", VCPUs: 500, MemoryMiB: 1, Kernel: "vmlinux", Rootfs: "/a/../b", BootArgs: "a\nb"}, operator)
		fields := app.ErrorFields(err)
		for _, f := range []string{"name", "vcpus", "memory_mib", "kernel", "rootfs", "boot_args"} {
			if fields[f] == "" {
				t.Errorf("invalid create: no message for field %s (err %v)", f, err)
			}
		}
		all, _ := s.List(ctx)
		if len(all) != 1 {
			t.Errorf("after invalid create there are %d VMs, want 1", len(all))
		}
	})
}

func TestGuestTokenIsolation(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := NewService(db, testRules(t), t.TempDir())
		a, tokA, _ := s.Create(ctx, app.VMSpec{Name: "a"}, operator)
		b, tokB, _ := s.Create(ctx, app.VMSpec{Name: "b"}, operator)
		idA, err := s.GuestVM(ctx, tokA)
		if err != nil || idA != a.ID {
			t.Fatalf("A's token names %q, %v", idA, err)
		}
		guestA := app.Actor{Kind: app.ActorGuest, Name: idA}
		if _, err := s.SetGuestIP(ctx, b.ID, "10.0.0.7", app.SourceCallback, guestA); app.ErrorCode(err) != app.EFORBIDDEN {
			t.Errorf("A's token on B: %v, want forbidden", err)
		}
		if got, _ := s.Get(ctx, b.ID); got.GuestIP != "" {
			t.Errorf("A set B's guest IP to %s", got.GuestIP)
		}
		if _, err := s.SetGuestIP(ctx, a.ID, "10.0.0.7", app.SourceManual, guestA); app.ErrorCode(err) != app.EINVALID {
			t.Errorf("a guest claiming manual: %v, want invalid", err)
		}
		if _, err := s.GuestVM(ctx, "hrg_nope"); app.ErrorCode(err) != app.EUNAUTHORIZED {
			t.Errorf("unknown token: %v, want unauthorized", err)
		}
		newTok, err := s.RotateRegistrationToken(ctx, b.ID, operator)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.GuestVM(ctx, tokB); app.ErrorCode(err) != app.EUNAUTHORIZED {
			t.Errorf("rotated-out token: %v, want unauthorized", err)
		}
		if id, err := s.GuestVM(ctx, newTok); err != nil || id != b.ID {
			t.Errorf("new token: %q %v", id, err)
		}
	})
}

func TestSetGuestIPAudited(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := NewService(db, testRules(t), t.TempDir())
		vm, _, _ := s.Create(ctx, app.VMSpec{Name: "a"}, operator)
		guest := app.Actor{Kind: app.ActorGuest, Name: vm.ID, Addr: "10.0.0.5"}
		got, err := s.SetGuestIP(ctx, vm.ID, "10.0.0.5", app.SourceCallback, guest)
		if err != nil {
			t.Fatal(err)
		}
		if got.GuestIP != "10.0.0.5" || got.GuestIPSource != app.SourceCallback {
			t.Errorf("after callback: %s (%s)", got.GuestIP, got.GuestIPSource)
		}
		if _, err := s.SetGuestIP(ctx, vm.ID, "127.0.0.1", app.SourceManual, operator); app.ErrorCode(err) != app.EINVALID {
			t.Errorf("loopback: %v, want invalid", err)
		}
		got, _ = s.Get(ctx, vm.ID)
		if got.GuestIP != "10.0.0.5" || got.GuestIPSource != app.SourceCallback {
			t.Errorf("a refused change altered the VM: %s (%s)", got.GuestIP, got.GuestIPSource)
		}
		if _, err := s.SetGuestIP(ctx, vm.ID, "", app.SourceManual, operator); err != nil {
			t.Fatal(err)
		}
		log, _ := s.AuditLog(ctx, vm.ID, 10)
		var details []string
		for _, e := range log {
			details = append(details, e.Actor+" "+e.Detail+" from "+e.Addr)
		}
		want := []string{
			"user:admin cleared guest IP (manual) from 127.0.0.1",
			"guest:" + vm.ID + " set guest IP 10.0.0.5 (callback) from 10.0.0.5",
			"user:admin created a (1 vCPU, 256 MiB) from 127.0.0.1",
		}
		if strings.Join(details, "\n") != strings.Join(want, "\n") {
			t.Errorf("audit log:\n%s\nwant:\n%s", strings.Join(details, "\n"), strings.Join(want, "\n"))
		}
	})
}

func TestUpdateAndDeleteRefuseBusyVM(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := NewService(db, testRules(t), t.TempDir())
		vm, _, _ := s.Create(ctx, app.VMSpec{Name: "a"}, operator)
		four := 4
		got, err := s.Update(ctx, vm.ID, app.VMUpdate{VCPUs: &four}, operator)
		if err != nil || got.VCPUs != 4 || got.Name != "a" {
			t.Fatalf("update: %+v, %v", got, err)
		}
		bad := "Nope!"
		if _, err := s.Update(ctx, vm.ID, app.VMUpdate{Name: &bad}, operator); app.ErrorFields(err)["name"] == "" {
			t.Errorf("bad rename: %v, want a name field error", err)
		}
		// Lifecycle arrives with the drivers; until then mark a VM running by hand, as a
		// driver would, to check that its definition is protected.
		if err := db.SetVMState(ctx, vm.ID, app.VMRunning, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Update(ctx, vm.ID, app.VMUpdate{VCPUs: &four}, operator); app.ErrorCode(err) != app.ECONFLICT {
			t.Errorf("update of running VM: %v, want conflict", err)
		}
		if err := s.Delete(ctx, vm.ID, operator); app.ErrorCode(err) != app.ECONFLICT {
			t.Errorf("delete of running VM: %v, want conflict", err)
		}
		if err := db.SetVMState(ctx, vm.ID, app.VMStopped, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, vm.ID, operator); err != nil {
			t.Errorf("delete of stopped VM: %v", err)
		}
	})
}
