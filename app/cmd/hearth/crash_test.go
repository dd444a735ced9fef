package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"hearth/app"
	"hearth/app/config"
	"hearth/app/store"
	"hearth/app/vm"
	"hearth/provision"
	"hearth/provision/seed"
)

// seedWriterEnv makes the test binary a process that creates provisioned VMs in a loop on a
// data dir, as a manager under write load does, until it is killed.
const seedWriterEnv = "HEARTH_TEST_SEED_WRITER"

func seedWriter(dataDir string) {
	ctx := context.Background()
	db, err := store.Open(ctx, "", dataDir)
	if err == nil {
		_, err = db.Migrate(ctx)
	}
	key, kerr := provision.LoadOrCreateManagerKey(dataDir)
	sealKey, serr := provision.LoadOrCreateSealKey(dataDir)
	if err != nil || kerr != nil || serr != nil {
		fmt.Println("seed writer:", err, kerr, serr)
		os.Exit(2)
	}
	agent := bytes.Repeat([]byte("pretend agent "), 600_000) // ~8 MB, like the real one
	prov := &provision.Provisioner{PublicURL: "http://10.0.0.1:8080", ManagerKey: key, SealKey: sealKey,
		Agent: func(string) ([]byte, error) { return agent, nil }}
	cidrs, _ := config.ParseCIDRs(config.DefaultGuestCIDRs)
	s := vm.NewService(db, vm.Rules{CIDRs: cidrs}, dataDir).WithSeeder(prov)
	for i := 0; ; i++ {
		v, _, err := s.Create(ctx, app.VMSpec{Name: fmt.Sprintf("load-%d", i)}, cliActor)
		if err != nil {
			fmt.Println("create:", err)
			os.Exit(2)
		}
		// Seeds are rendered at start and for downloads: render one, as either would.
		_, done, err := s.RenderSeed(ctx, v.ID)
		if err != nil {
			fmt.Println("render:", err)
			os.Exit(2)
		}
		done()
		fmt.Println("created")
	}
}

// leftovers lists what a crash left: VM directories no record owns, seed staging files,
// and anything in the manager's tmp/.
func leftovers(t *testing.T, dataDir string) []string {
	t.Helper()
	db, err := store.Open(context.Background(), "", dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	vms, err := db.VMs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, v := range vms {
		known[v.ID] = true
	}
	var left []string
	dirs, _ := os.ReadDir(filepath.Join(dataDir, "vms"))
	for _, d := range dirs {
		if !known[d.Name()] {
			left = append(left, "orphan "+d.Name())
		}
		tmps, _ := filepath.Glob(filepath.Join(dataDir, "vms", d.Name(), seed.TempPrefix+"*"))
		left = append(left, tmps...)
	}
	staged, _ := os.ReadDir(filepath.Join(dataDir, "tmp"))
	for _, s := range staged {
		left = append(left, "tmp/"+s.Name())
	}
	return left
}

// TestCrashLeftoversAreSwept reproduces kill -9 under write load: a process creating
// provisioned VMs is killed while it writes seeds, which leaves VM directories without a
// record and staging files, all holding tokens and private host keys. The next manager's
// start removes them and keeps every recorded VM's seed.
func TestCrashLeftoversAreSwept(t *testing.T) {
	needAgent(t)
	seen := 0
	for attempt := 0; attempt < 6; attempt++ {
		dataDir := t.TempDir()
		os.MkdirAll(filepath.Join(dataDir, "tmp"), 0o700)
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), seedWriterEnv+"="+dataDir, "TMPDIR="+filepath.Join(dataDir, "tmp"))
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(out)
		for n := 0; n < 2+attempt && lines.Scan(); n++ {
			if lines.Text() != "created" {
				t.Fatalf("seed writer: %s", lines.Text())
			}
		}
		time.Sleep(time.Duration(attempt*7) * time.Millisecond) // somewhere in the next create
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		left := leftovers(t, dataDir)
		seen += len(left)
		t.Logf("attempt %d: killed under load; left %d: %v", attempt, len(left), left)

		m, _ := startMain(t, map[string]string{"HEARTH_DATA_DIR": dataDir})
		if after := leftovers(t, dataDir); len(after) > 0 {
			t.Errorf("attempt %d: after the next start still left: %v", attempt, after)
		}
		vms, err := m.VMs.List(context.Background())
		if err != nil || len(vms) < 2 {
			t.Fatalf("attempt %d: %d VMs recorded, %v", attempt, len(vms), err)
		}
		for _, v := range vms { // every recorded VM's seed renders, whatever the kill cut short
			path, done, err := m.VMs.RenderSeed(context.Background(), v.ID)
			var files map[string][]byte
			if err == nil {
				files, err = seed.Read(path)
				done()
			}
			if err != nil || !strings.Contains(string(files["meta-data"]), v.ID) {
				t.Errorf("attempt %d: the seed of recorded VM %s: %v", attempt, v.Name, err)
			}
		}
		m.Close()
	}
	if seen == 0 {
		t.Error("no kill left anything behind: the reproduction did not reproduce")
	}
}

// TestSecondManagerRefused: one data dir, one manager; the lock dies with its holder.
func TestSecondManagerRefused(t *testing.T) {
	dataDir := t.TempDir()
	first, _ := startMain(t, map[string]string{"HEARTH_DATA_DIR": dataDir})
	cfg, err := config.Load(nil, func(k string) string {
		return testEnv(map[string]string{"HEARTH_DATA_DIR": dataDir, "HEARTH_LISTEN": "127.0.0.1:0"})(k)
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Start(context.Background(), cfg, newLogger("error", os.Stderr), &bytes.Buffer{}); err == nil ||
		!strings.Contains(err.Error(), fmt.Sprintf("another hearth serve (pid %d) is using the data dir", os.Getpid())) {
		t.Errorf("a second manager on the data dir: %v", err)
	}
	first.Close()
	second, _ := startMain(t, map[string]string{"HEARTH_DATA_DIR": dataDir})
	second.Close()
}
