package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"hearth/app"
	"hearth/app/store"
	"hearth/internal/testkit/storetest"
)

func newVM(id, name string) *app.VM {
	return &app.VM{ID: id, Name: name, State: app.VMDefined, VCPUs: 2, MemoryMiB: 512,
		Kernel: "/img/vmlinux", Rootfs: "/img/rootfs.ext4", BootArgs: "console=ttyS0", MAC: "02:00:00:00:00:01",
		Provisioned: true, AgentToken: "hag_x", HostKey: "ssh-ed25519 AAAA", HostKeySource: "injected"}
}

func mustCreate(t *testing.T, db *store.DB, vm *app.VM) {
	t.Helper()
	if err := db.CreateVM(context.Background(), vm, "hash-"+vm.ID, &app.AuditEntry{Actor: "user:admin", Action: app.AuditVMCreate, VMID: vm.ID}); err != nil {
		t.Fatal(err)
	}
}

func TestVMRoundTrip(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		vm := newVM("a1", "alpha")
		mustCreate(t, db, vm)
		got, err := db.VM(ctx, "a1")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(vm, got); diff != "" {
			t.Errorf("VM round trip (-want +got):\n%s", diff)
		}
		if got.CreatedAt.IsZero() || got.CreatedAt.Location() != time.UTC {
			t.Errorf("created_at = %v, want a UTC time", got.CreatedAt)
		}
		mustCreate(t, db, newVM("b2", "beta"))
		all, err := db.VMs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 2 || all[0].Name != "alpha" || all[1].Name != "beta" {
			t.Errorf("VMs() = %v, want alpha, beta", all)
		}
	})
}

func TestVMNameUnique(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mustCreate(t, db, newVM("a1", "alpha"))
		err := db.CreateVM(ctx, newVM("a2", "alpha"), "hash-a2", nil)
		if app.ErrorCode(err) != app.ECONFLICT {
			t.Fatalf("duplicate name: err = %v, want conflict", err)
		}
		// Nothing of the failed create may remain: not the VM, not its token.
		if _, err := db.VM(ctx, "a2"); app.ErrorCode(err) != app.ENOTFOUND {
			t.Errorf("VM a2 after failed create: err = %v, want not found", err)
		}
		if _, err := db.RegistrationTokenVM(ctx, "hash-a2"); app.ErrorCode(err) != app.ENOTFOUND {
			t.Errorf("token of a2 after failed create: err = %v, want not found", err)
		}
		// Renaming onto a taken name conflicts too.
		b := newVM("b1", "beta")
		mustCreate(t, db, b)
		b.Name = "alpha"
		if err := db.UpdateVM(ctx, b, nil); app.ErrorCode(err) != app.ECONFLICT {
			t.Errorf("rename onto taken name: err = %v, want conflict", err)
		}
	})
}

func TestUpdateVMDetectsConcurrentChange(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		vm := newVM("a1", "alpha")
		mustCreate(t, db, vm)
		stale := *vm
		vm.VCPUs = 4
		if err := db.UpdateVM(ctx, vm, nil); err != nil {
			t.Fatal(err)
		}
		stale.MemoryMiB = 1024
		if err := db.UpdateVM(ctx, &stale, nil); app.ErrorCode(err) != app.ECONFLICT {
			t.Fatalf("update from stale copy: err = %v, want conflict", err)
		}
		got, _ := db.VM(ctx, "a1")
		if got.VCPUs != 4 || got.MemoryMiB != 512 {
			t.Errorf("after stale update: vcpus=%d memory=%d, want 4 and 512", got.VCPUs, got.MemoryMiB)
		}
		missing := newVM("zz", "zed")
		if err := db.UpdateVM(ctx, missing, nil); app.ErrorCode(err) != app.ENOTFOUND {
			t.Errorf("update of missing VM: err = %v, want not found", err)
		}
	})
}

func TestSetGuestIP(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mustCreate(t, db, newVM("a1", "alpha"))
		vm, err := db.SetGuestIP(ctx, "a1", "10.0.0.5", app.SourceCallback,
			&app.AuditEntry{Actor: "guest:a1", Action: app.AuditGuestIP, VMID: "a1", Detail: "set 10.0.0.5"})
		if err != nil {
			t.Fatal(err)
		}
		if vm.GuestIP != "10.0.0.5" || vm.GuestIPSource != app.SourceCallback || vm.GuestIPUpdatedAt.IsZero() {
			t.Errorf("after set: %+v", vm)
		}
		vm, err = db.SetGuestIP(ctx, "a1", "", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if vm.GuestIP != "" || vm.GuestIPSource != "" || !vm.GuestIPUpdatedAt.IsZero() {
			t.Errorf("after clear: ip=%q source=%q at=%v, want all empty", vm.GuestIP, vm.GuestIPSource, vm.GuestIPUpdatedAt)
		}
		if _, err := db.SetGuestIP(ctx, "nope", "10.0.0.6", app.SourceManual, nil); app.ErrorCode(err) != app.ENOTFOUND {
			t.Errorf("set on missing VM: err = %v, want not found", err)
		}
		// A source the schema does not know is refused by the database itself, and the
		// audit entry written in the same transaction is rolled back with it.
		_, err = db.SetGuestIP(ctx, "a1", "10.0.0.7", "bogus", &app.AuditEntry{Actor: "x", Action: app.AuditGuestIP, VMID: "a1", Detail: "bogus"})
		if err == nil {
			t.Fatal("set with unknown source: want error")
		}
		log, _ := db.AuditLog(ctx, "a1", 10)
		for _, e := range log {
			if e.Detail == "bogus" {
				t.Errorf("audit entry of a failed change was kept: %+v", e)
			}
		}
		got, _ := db.VM(ctx, "a1")
		if got.GuestIP != "" {
			t.Errorf("guest ip after failed set = %q, want empty", got.GuestIP)
		}
	})
}

// TestManualOverrideOverRegistration: an operator's value stays in effect while the guest
// keeps registering; clearing it falls back to the guest's last registration; clearing a
// registered value forgets it.
func TestManualOverrideOverRegistration(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mustCreate(t, db, newVM("m1", "manual"))
		set := func(ip string, src app.GuestIPSource) (*app.VM, string) {
			t.Helper()
			e := &app.AuditEntry{Actor: "x", Action: app.AuditGuestIP, VMID: "m1", Detail: "set " + ip}
			vm, err := db.SetGuestIP(ctx, "m1", ip, src, e)
			if err != nil {
				t.Fatal(err)
			}
			return vm, e.Detail
		}
		want := func(step string, vm *app.VM, ip string, src app.GuestIPSource) {
			t.Helper()
			if vm.GuestIP != ip || vm.GuestIPSource != src {
				t.Errorf("%s: guest ip %q (%s), want %q (%s)", step, vm.GuestIP, vm.GuestIPSource, ip, src)
			}
			if got, _ := db.VM(ctx, "m1"); got.GuestIP != ip || got.GuestIPSource != src {
				t.Errorf("%s: stored %q (%s), want %q (%s)", step, got.GuestIP, got.GuestIPSource, ip, src)
			}
		}
		vm, _ := set("10.0.0.2", app.SourceCallback)
		want("callback", vm, "10.0.0.2", app.SourceCallback)
		vm, _ = set("10.0.0.50", app.SourceManual)
		want("manual", vm, "10.0.0.50", app.SourceManual)
		vm, detail := set("10.0.0.3", app.SourceAgent)
		want("agent under manual", vm, "10.0.0.50", app.SourceManual)
		if !strings.Contains(detail, "manual 10.0.0.50 stays in effect") {
			t.Errorf("audit detail %q does not say the override was kept", detail)
		}
		vm, detail = set("", app.SourceManual)
		want("clear manual", vm, "10.0.0.3", app.SourceAgent)
		if !strings.Contains(detail, "back to 10.0.0.3 registered by the guest (agent)") {
			t.Errorf("audit detail %q", detail)
		}
		if vm.GuestIPUpdatedAt.IsZero() {
			t.Error("fallback lost the registration's time")
		}
		vm, _ = set("", app.SourceManual)
		want("clear registered", vm, "", "")
		// Forgotten: a later manual value and its clearing leave nothing behind.
		set("10.0.0.60", app.SourceManual)
		vm, _ = set("", app.SourceManual)
		want("clear manual with nothing registered", vm, "", "")
		log, _ := db.AuditLog(ctx, "m1", 20)
		if len(log) < 8 {
			t.Errorf("audit log has %d entries, want one per change (8)", len(log))
		}
	})
}

func TestDeleteVM(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mustCreate(t, db, newVM("a1", "alpha"))
		if err := db.DeleteVM(ctx, "a1", &app.AuditEntry{Actor: "user:admin", Action: app.AuditVMDelete, VMID: "a1"}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.VM(ctx, "a1"); app.ErrorCode(err) != app.ENOTFOUND {
			t.Errorf("after delete: err = %v, want not found", err)
		}
		// The registration token goes with the VM (foreign key cascade, on in SQLite too).
		if _, err := db.RegistrationTokenVM(ctx, "hash-a1"); app.ErrorCode(err) != app.ENOTFOUND {
			t.Errorf("token after delete: err = %v, want not found", err)
		}
		// The audit log outlives the VM.
		log, err := db.AuditLog(ctx, "a1", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(log) != 2 || log[0].Action != app.AuditVMDelete || log[1].Action != app.AuditVMCreate {
			t.Errorf("audit log after delete = %+v, want delete then create", log)
		}
		if err := db.DeleteVM(ctx, "a1", nil); app.ErrorCode(err) != app.ENOTFOUND {
			t.Errorf("second delete: err = %v, want not found", err)
		}
	})
}

func TestRegistrationToken(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mustCreate(t, db, newVM("a1", "alpha"))
		id, err := db.RegistrationTokenVM(ctx, "hash-a1")
		if err != nil || id != "a1" {
			t.Fatalf("RegistrationTokenVM = %q, %v; want a1", id, err)
		}
		if err := db.ReplaceRegistrationToken(ctx, "a1", "new-hash", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := db.RegistrationTokenVM(ctx, "hash-a1"); app.ErrorCode(err) != app.ENOTFOUND {
			t.Errorf("old token still works: %v", err)
		}
		if h, _ := db.RegistrationTokenHash(ctx, "a1"); h != "new-hash" {
			t.Errorf("hash = %q, want new-hash", h)
		}
	})
}

func TestSetHostKey(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mustCreate(t, db, newVM("a1", "alpha"))
		if err := db.SetHostKey(ctx, "a1", "ssh-ed25519 BBBB", "tofu", nil); err != nil {
			t.Fatal(err)
		}
		got, _ := db.VM(ctx, "a1")
		if got.HostKey != "ssh-ed25519 BBBB" || got.HostKeySource != "tofu" {
			t.Errorf("host key = %q (%s)", got.HostKey, got.HostKeySource)
		}
		if err := db.SetHostKey(ctx, "a1", "k", "guessed", nil); err == nil {
			t.Error("unknown host key source accepted")
		}
		if err := db.SetHostKey(ctx, "zz", "k", "tofu", nil); app.ErrorCode(err) != app.ENOTFOUND {
			t.Errorf("missing VM: %v", err)
		}
	})
}

// TestRunningVMsForTheCollector: the hand-scanned round read gives what the collector
// polls by, as the full read has it; stopped and defined VMs are not among them.
func TestRunningVMsForTheCollector(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		for _, id := range []string{"r1", "p1", "s1", "d1"} {
			v := newVM(id, "vm-"+id)
			v.MAC = "02:00:00:00:00:" + map[string]string{"r1": "11", "p1": "12", "s1": "13", "d1": "14"}[id]
			mustCreate(t, db, v)
		}
		db.SetRun(ctx, "r1", store.Run{State: app.VMRunning, PID: 4242, Identity: "start:77", Driver: "qemu"}, nil)
		db.SetRun(ctx, "p1", store.Run{State: app.VMPaused, PID: 4343, Identity: "start:78", Driver: "qemu"}, nil)
		db.SetRun(ctx, "s1", store.Run{State: app.VMStopped}, nil)
		if _, err := db.SetGuestIP(ctx, "r1", "10.77.0.9", app.SourceCallback, nil); err != nil {
			t.Fatal(err)
		}
		if err := db.SetAgentToken(ctx, "r1", "hag_r1"); err != nil {
			t.Fatal(err)
		}
		vms, err := db.RunningVMs(ctx, "")
		if err != nil || len(vms) != 2 || vms[0].ID != "p1" || vms[1].ID != "r1" {
			t.Fatalf("running: %v %v", vms, err)
		}
		full, _ := db.VM(ctx, "r1")
		got := vms[1]
		if got.Name != full.Name || got.State != app.VMRunning || got.VCPUs != full.VCPUs || got.MemoryMiB != full.MemoryMiB ||
			got.GuestIP != "10.77.0.9" || got.GuestIPSource != app.SourceCallback || got.AgentToken != "hag_r1" || got.PID != 4242 ||
			got.PIDIdentity != "start:77" || got.RunningDriver != "qemu" || got.Node != full.Node {
			t.Errorf("the round's r1: %+v\nthe full read: %+v", got, full)
		}
		if vms[0].State != app.VMPaused || vms[0].GuestIP != "" || vms[0].AgentToken != "hag_x" {
			t.Errorf("the round's p1: %+v", vms[0])
		}
	})
}
