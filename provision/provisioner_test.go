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

// seed renders the VM's seed as the download does and returns its files; the rendered
// file is removed again.
func (p provisioned) seed(t *testing.T, s *vm.Service, id string) map[string][]byte {
	t.Helper()
	path, done, err := s.RenderSeed(context.Background(), id)
	if err != nil {
		t.Fatalf("render the seed of %s: %v", id, err)
	}
	defer done()
	files, err := seed.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func newProvisioned(t *testing.T, db *store.DB, agent []byte) (*vm.Service, provisioned) {
	t.Helper()
	dir := t.TempDir()
	key, err := LoadOrCreateManagerKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	sealKey, err := LoadOrCreateSealKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	p := &Provisioner{PublicURL: "http://192.168.50.1:8080", ManagerKey: key, SealKey: sealKey,
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
		// Nothing on disk until the VM starts or its seed is asked for; the record holds
		// the seed's secrets sealed, never the token or the host's private key in plain.
		if _, err := os.Stat(filepath.Join(p.DataDir, "vms", v.ID)); !os.IsNotExist(err) {
			t.Errorf("a VM directory was written at create: %v", err)
		}
		if stored.SeedSecrets == "" || strings.Contains(stored.SeedSecrets, regToken) || strings.Contains(stored.SeedSecrets, "PRIVATE KEY") {
			t.Errorf("sealed secrets in the record: %.80q", stored.SeedSecrets)
		}
		files := p.seed(t, s, v.ID)
		if again := p.seed(t, s, v.ID); len(again) != len(files) {
			t.Error("a second render carries other files")
		} else {
			for name, b := range files {
				if !bytes.Equal(again[name], b) {
					t.Errorf("%s differs between two renders: cloud-init would see another seed", name)
				}
			}
		}
		if left, _ := filepath.Glob(filepath.Join(p.DataDir, "vms", v.ID, seed.TempPrefix+"*")); len(left) > 0 {
			t.Errorf("renders left files: %v", left)
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
		if _, err := os.Stat(filepath.Join(p.DataDir, "vms", v.ID)); !os.IsNotExist(err) {
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
	// A taken name: nothing is written.
	if _, _, err := s.Create(ctx, app.VMSpec{Name: "taken"}, operator); app.ErrorCode(err) != app.ECONFLICT {
		t.Fatalf("duplicate: %v", err)
	}
	dirs, _ := os.ReadDir(filepath.Join(p.DataDir, "vms"))
	if len(dirs) != 0 {
		t.Errorf("%d VM dirs after creates, want none (seeds are rendered at start)", len(dirs))
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
	if _, _, err := s2.RenderSeed(ctx, v.ID); app.ErrorCode(err) != app.ENOTFOUND {
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
		files := p.seed(t, s, vms[1].ID)
		nc := string(files["network-config"])
		if !strings.Contains(nc, `- "10.77.0.3/29"`) || !strings.Contains(nc, `gateway4: "10.77.0.1"`) || !strings.Contains(nc, `macaddress: "`+vms[1].MAC+`"`) {
			t.Errorf("network-config:\n%s", nc)
		}
		// Full: refused, and nothing is left behind.
		if _, _, err := s.Create(ctx, app.VMSpec{Name: "full"}, operator); app.ErrorCode(err) != app.ECONFLICT || !strings.Contains(err.Error(), "no free address") {
			t.Errorf("sixth VM in a /29: %v", err)
		}
		if vms, _ := s.List(ctx); len(vms) != 5 {
			t.Errorf("%d VMs, want 5", len(vms))
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

// TestLegacySeedAdopted: a VM created by a manager that wrote its seed whole keeps that
// seed's instance id, registration token and host key: the first render seals them into
// the record, removes the old file and carries the same files.
func TestLegacySeedAdopted(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s, p := newProvisioned(t, db, []byte("\x7fELF agent"))
		priv, pub, err := NewKeyPair("hearth-old")
		if err != nil {
			t.Fatal(err)
		}
		v := &app.VM{ID: "legacyvm00000001", Name: "old", State: app.VMStopped, VCPUs: 1, MemoryMiB: 256, MAC: "02:00:00:00:00:07",
			Provisioned: true, AgentToken: "hag_old_agent_token", HostKey: pub, HostKeySource: "injected"}
		token, hash := app.NewToken(app.PrefixRegistrationToken)
		if err := db.CreateVM(ctx, v, hash, nil); err != nil {
			t.Fatal(err)
		}
		legacy := app.FilesOf(p.DataDir, v.ID).Seed()
		if err := p.writeSeed(legacy, v, v.ID+"-r2", token, priv); err != nil {
			t.Fatal(err)
		}
		before, err := seed.Read(legacy)
		if err != nil {
			t.Fatal(err)
		}
		after := p.seed(t, s, v.ID)
		for name, b := range before {
			if !bytes.Equal(after[name], b) {
				t.Errorf("%s changed when the seed was adopted:\n%s\n---\n%s", name, b, after[name])
			}
		}
		if _, err := os.Stat(legacy); !os.IsNotExist(err) {
			t.Errorf("the legacy seed is still on disk: %v", err)
		}
		if got, _ := s.Get(ctx, v.ID); got.SeedSecrets == "" {
			t.Error("the adopted secrets were not recorded")
		}
		if again := p.seed(t, s, v.ID); !bytes.Equal(again["user-data"], before["user-data"]) {
			t.Error("a render from the record differs from the legacy seed")
		}
		// A seed whose host key is not the recorded one is not adopted.
		w := &app.VM{ID: "legacyvm00000002", Name: "other", State: app.VMStopped, VCPUs: 1, MemoryMiB: 256, MAC: "02:00:00:00:00:08",
			Provisioned: true, AgentToken: "hag_other_agent_token", HostKey: pub, HostKeySource: "injected"}
		if err := db.CreateVM(ctx, w, "h2", nil); err != nil {
			t.Fatal(err)
		}
		otherPriv, _, _ := NewKeyPair("x")
		if err := p.writeSeed(app.FilesOf(p.DataDir, w.ID).Seed(), w, w.ID, token, otherPriv); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.RenderSeed(ctx, w.ID); err == nil || !strings.Contains(err.Error(), "recorded host key") {
			t.Errorf("a seed with another host key: %v", err)
		}
	})
}
