package provision

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"hearth/app"
	"hearth/app/config"
	"hearth/app/hypervisor/hostnet"
	"hearth/app/store"
	"hearth/app/vm"
	"hearth/internal/testkit/storetest"
	"hearth/provision/seed"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

var operator = app.Actor{Kind: app.ActorUser, Name: "admin"}

// provisioned is the test's provisioner with the data dir its service keeps VMs in.
type provisioned struct {
	*Provisioner
	DataDir string
}

// SeedPath is where the VM's seed is.
func (p provisioned) SeedPath(id string) string { return app.FilesOf(p.DataDir, id).Seed() }

func newProvisioned(t *testing.T, db *store.DB, agent []byte) (*vm.Service, provisioned) {
	t.Helper()
	dir := t.TempDir()
	key, err := LoadOrCreateManagerKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	p := &Provisioner{PublicURL: "http://192.168.50.1:8080", ManagerKey: key,
		Agent: func(arch string) ([]byte, error) {
			if agent == nil {
				return nil, app.Errorf(app.EUNAVAILABLE, "no agent for %s", arch)
			}
			return agent, nil
		}}
	cidrs, _ := config.ParseCIDRs(config.DefaultGuestCIDRs)
	return vm.NewService(db, vm.Rules{CIDRs: cidrs}, dir).WithSeeder(p), provisioned{p, dir}
}

func TestCreateBuildsSeed(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		agent := []byte("\x7fELF pretend agent")
		s, p := newProvisioned(t, db, agent)
		v, regToken, err := s.Create(ctx, app.VMSpec{Name: "web-1"}, operator)
		if err != nil {
			t.Fatal(err)
		}
		if !v.Provisioned || v.HostKeySource != "injected" || !strings.HasPrefix(v.HostKey, "ssh-ed25519 ") || !strings.HasPrefix(v.AgentToken, app.PrefixAgentToken) {
			t.Errorf("VM after create: %+v", v)
		}
		stored, _ := s.Get(ctx, v.ID)
		if stored.AgentToken != v.AgentToken || stored.HostKey != v.HostKey {
			t.Error("provisioning fields were not stored")
		}
		path, err := s.SeedPath(ctx, v.ID)
		if err != nil || path != p.SeedPath(v.ID) {
			t.Fatalf("SeedPath = %q, %v", path, err)
		}
		files, err := seed.Read(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(files["hearth-agent"], agent) {
			t.Error("the seed does not carry the agent")
		}
		ud := string(files["user-data"])
		for _, want := range []string{"HEARTH_VM_ID=" + v.ID, "HEARTH_REGISTRATION_TOKEN=" + regToken, "HEARTH_AGENT_TOKEN=" + v.AgentToken,
			"HEARTH_MANAGER_URL=http://192.168.50.1:8080", "ed25519_public: \"" + v.HostKey + "\""} {
			if !strings.Contains(ud, want) {
				t.Errorf("user-data lacks %q", want)
			}
		}
		if md := string(files["meta-data"]); !strings.Contains(md, `instance-id: "`+v.ID+`"`) || !strings.Contains(md, `local-hostname: "web-1"`) {
			t.Errorf("meta-data: %s", md)
		}
		// Deleting the VM removes its files.
		if err := s.Delete(ctx, v.ID, operator); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Dir(path)); !os.IsNotExist(err) {
			t.Errorf("VM dir left after delete: %v", err)
		}
	})
}

func TestCreateFailuresLeaveNothing(t *testing.T) {
	db := storetest.SQLite(t)
	ctx := context.Background()
	s, p := newProvisioned(t, db, []byte("agent"))
	if _, _, err := s.Create(ctx, app.VMSpec{Name: "taken"}, operator); err != nil {
		t.Fatal(err)
	}
	// A taken name: the seed written first must be removed again.
	if _, _, err := s.Create(ctx, app.VMSpec{Name: "taken"}, operator); app.ErrorCode(err) != app.ECONFLICT {
		t.Fatalf("duplicate: %v", err)
	}
	dirs, _ := os.ReadDir(filepath.Join(p.DataDir, "vms"))
	if len(dirs) != 1 {
		t.Errorf("%d VM dirs after a refused create, want 1", len(dirs))
	}
	// Without an agent, provisioning is refused with the reason, and nothing is created;
	// asking for no provisioning still works.
	s2, p2 := newProvisioned(t, db, nil)
	if _, _, err := s2.Create(ctx, app.VMSpec{Name: "no-agent"}, operator); app.ErrorCode(err) != app.EUNAVAILABLE || !strings.Contains(err.Error(), "no agent") {
		t.Errorf("create without an agent: %v", err)
	}
	if _, err := os.Stat(filepath.Join(p2.DataDir, "vms")); !os.IsNotExist(err) {
		t.Error("files written for a refused VM")
	}
	off := false
	v, _, err := s2.Create(ctx, app.VMSpec{Name: "plain", Provision: &off}, operator)
	if err != nil || v.Provisioned {
		t.Fatalf("unprovisioned create: %v %+v", err, v)
	}
	if _, err := s2.SeedPath(ctx, v.ID); app.ErrorCode(err) != app.ENOTFOUND {
		t.Errorf("seed of an unprovisioned VM: %v", err)
	}
}

func TestManagerKeyPersists(t *testing.T) {
	dir := t.TempDir()
	a, err := LoadOrCreateManagerKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreateManagerKey(dir)
	if err != nil || AuthorizedKey(a.PublicKey()) != AuthorizedKey(b.PublicKey()) {
		t.Fatalf("second load gave another key: %v", err)
	}
	st, _ := os.Stat(filepath.Join(dir, ManagerKeyFile))
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v", st.Mode().Perm())
	}
}

func TestStaticAddressesInSeeds(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s, p := newProvisioned(t, db, []byte("agent"))
		n, err := hostnet.New(hostnet.Config{CIDR: netip.MustParsePrefix("10.77.0.1/29")}) // room for .2-.6
		if err != nil {
			t.Fatal(err)
		}
		s.WithAllocator(n)
		p.Gateway = "10.77.0.1"
		var vms []*app.VM
		for i := 0; i < 5; i++ {
			v, _, err := s.Create(ctx, app.VMSpec{Name: "a" + strconv.Itoa(i)}, operator)
			if err != nil {
				t.Fatal(err)
			}
			vms = append(vms, v)
		}
		if vms[0].Address != "10.77.0.2/29" || vms[4].Address != "10.77.0.6/29" {
			t.Errorf("addresses %s .. %s", vms[0].Address, vms[4].Address)
		}
		files, err := seed.Read(p.SeedPath(vms[1].ID))
		if err != nil {
			t.Fatal(err)
		}
		nc := string(files["network-config"])
		if !strings.Contains(nc, `- "10.77.0.3/29"`) || !strings.Contains(nc, `gateway4: "10.77.0.1"`) || !strings.Contains(nc, `macaddress: "`+vms[1].MAC+`"`) {
			t.Errorf("network-config:\n%s", nc)
		}
		// Full: refused, and nothing is left behind.
		if _, _, err := s.Create(ctx, app.VMSpec{Name: "full"}, operator); app.ErrorCode(err) != app.ECONFLICT || !strings.Contains(err.Error(), "no free address") {
			t.Errorf("sixth VM in a /29: %v", err)
		}
		dirs, _ := os.ReadDir(filepath.Join(p.DataDir, "vms"))
		if len(dirs) != 5 {
			t.Errorf("%d VM dirs, want 5", len(dirs))
		}
		// Deleting frees the address for the next VM.
		if err := s.Delete(ctx, vms[2].ID, operator); err != nil {
			t.Fatal(err)
		}
		v, _, err := s.Create(ctx, app.VMSpec{Name: "again"}, operator)
		if err != nil || v.Address != "10.77.0.4/29" {
			t.Errorf("reuse: %v %q", err, v.Address)
		}
		// The database itself refuses two VMs at one address.
		dup := &app.VM{ID: "dupdupdupdupdupd", Name: "dup", State: app.VMDefined, VCPUs: 1, MemoryMiB: 64, MAC: "02:00:00:00:00:09", Address: "10.77.0.4/29"}
		if err := db.CreateVM(ctx, dup, "h-dup", nil); app.ErrorCode(err) != app.ECONFLICT || !strings.Contains(err.Error(), "address") {
			t.Errorf("duplicate address: %v", err)
		}
	})
}
