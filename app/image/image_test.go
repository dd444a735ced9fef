package image

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"hearth/app"
	"hearth/app/store"
	"hearth/internal/testkit/qemutest"
	"hearth/internal/testkit/storetest"
	"hearth/internal/testkit/testenv"
	pimage "hearth/provision/image"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

var operator = app.Actor{Kind: app.ActorUser, Name: "admin"}

// fakeBuild stands in for mmdebstrap: it runs the steps, prints, and writes the files, or
// fails at failAt, having written half of them.
func fakeBuild(failAt string) func(ctx context.Context, spec pimage.Spec, dir string, step, log func(string)) ([]app.ImageFile, error) {
	return func(ctx context.Context, spec pimage.Spec, dir string, step, log func(string)) ([]app.ImageFile, error) {
		os.MkdirAll(dir, 0o750)
		for _, st := range pimage.BuildSteps {
			step(st)
			log("doing " + st)
			if st == failAt {
				return nil, &pimage.StepError{Step: st, Err: errors.New("E: Unable to locate package cloud-init")}
			}
			os.WriteFile(filepath.Join(dir, st), []byte(st), 0o644)
		}
		for _, f := range []string{pimage.KernelFile, pimage.VmlinuxFile, pimage.InitrdFile, pimage.RootfsFile} {
			os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644)
		}
		return pimage.Describe(dir)
	}
}

func newService(t *testing.T, db *store.DB) *Service {
	return &Service{DB: db, DataDir: t.TempDir()}
}

// TestBuildRecordsProgressAndOutcome: a build is recorded at once as building, ends ready
// with its files named and checksummed under images/<name>/, or failed naming the step and
// why, leaving no files; names are checked; a second image of a name is refused.
func TestBuildRecordsProgressAndOutcome(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db)
		s.Build = fakeBuild("")
		im, err := s.StartBuild(ctx, "debian-12", BuildSpec{}, operator)
		if err != nil || im.State != app.ImageBuilding || len(im.Steps) != len(pimage.BuildSteps) {
			t.Fatalf("start: %+v %v", im, err)
		}
		if _, err := s.StartBuild(ctx, "debian-12", BuildSpec{}, operator); app.ErrorCode(err) != app.ECONFLICT {
			t.Errorf("a second debian-12: %v", err)
		}
		s.Wait()
		got, err := s.Get(ctx, "", "debian-12")
		if err != nil || got.State != app.ImageReady || got.Kernel != filepath.Join(s.Dir("debian-12"), pimage.KernelFile) ||
			got.Vmlinux == "" || got.Rootfs == "" || got.Initrd == "" || len(got.Files) != 4 || got.Init != app.InitSystemd || !got.CloudInit {
			t.Fatalf("after the build: %+v %v", got, err)
		}
		for _, st := range got.Steps {
			if st.State != app.JobDone {
				t.Errorf("step %+v", st)
			}
		}
		if !strings.Contains(got.Log, "doing checksum") || got.Reference != "debian bookworm systemd 2G" {
			t.Errorf("log %q, reference %q", got.Log, got.Reference)
		}
		if _, err := os.Stat(s.staging("debian-12")); !os.IsNotExist(err) {
			t.Error("the staging directory remains")
		}

		s.Build = fakeBuild(pimage.StepBootstrap)
		if _, err := s.StartBuild(ctx, "broken", BuildSpec{Init: app.InitOpenRC, Release: "trixie", Size: "1G"}, operator); err != nil {
			t.Fatal(err)
		}
		s.Wait()
		failed, _ := s.Get(ctx, "", "broken")
		if failed.State != app.ImageFailed || !strings.Contains(failed.Error, "bootstrap: E: Unable to locate package") ||
			failed.Steps[0].State != app.JobFailed || failed.Steps[1].State != app.StepPending {
			t.Errorf("failed build: %+v", failed)
		}
		for _, p := range []string{s.Dir("broken"), s.staging("broken")} {
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("a failed build left %s", p)
			}
		}
		for _, c := range []struct {
			name string
			spec BuildSpec
			want string
		}{
			{"Bad Name", BuildSpec{}, "name"}, {"../x", BuildSpec{}, "name"}, {"ok", BuildSpec{Init: "runit"}, "init"},
			{"ok", BuildSpec{Size: "5"}, "size"}, {"ok", BuildSpec{Size: "100M"}, "size"}, {"ok", BuildSpec{Release: "Bookworm!"}, "release"},
			{"ok", BuildSpec{Mirror: "ftp://x"}, "mirror"},
		} {
			if _, err := s.StartBuild(ctx, c.name, c.spec, operator); app.ErrorFields(err)[c.want] == "" {
				t.Errorf("build %q %+v: %v, want a %s error", c.name, c.spec, err, c.want)
			}
		}
		list, _ := s.List(ctx)
		if len(list) != 2 || list[0].Name != "broken" {
			t.Errorf("list, newest first: %v", list)
		}
	})
}

// TestImportAndDeleteInUse: an image imported from files is ready with the facts of its
// root filesystem; deleting it while a VM uses it is refused naming the VM; once the VM is
// gone it is deleted with its files.
func TestImportAndDeleteInUse(t *testing.T) {
	db := storetest.SQLite(t)
	ctx := context.Background()
	s := newService(t, db)
	kernel, _ := qemutest.Kernel(t)
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		testenv.Missing(t, "mkfs.ext4", err)
	}
	tree := t.TempDir()
	os.MkdirAll(filepath.Join(tree, "sbin"), 0o755)
	os.WriteFile(filepath.Join(tree, "sbin/init"), []byte("init"), 0o755)
	rootfs := filepath.Join(t.TempDir(), "root.ext4")
	if out, err := exec.Command("mkfs.ext4", "-q", "-d", tree, rootfs, "8M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs: %v %s", err, out)
	}
	// Sources outside what the resolver admits are refused before anything is recorded.
	refuse := func(p string) (string, error) { return "", errors.New(p + " is outside the image directories") }
	if _, err := s.StartImport(ctx, "x", ImportFiles{Kernel: "/etc/shadow", Rootfs: rootfs}, refuse, operator); app.ErrorFields(err)["kernel"] == "" {
		t.Errorf("import from outside: %v", err)
	}
	if _, err := s.StartImport(ctx, "imp", ImportFiles{Kernel: kernel, Rootfs: rootfs}, nil, operator); err != nil {
		t.Fatal(err)
	}
	s.Wait()
	im, err := s.Get(ctx, "", "imp")
	if err != nil || im.State != app.ImageReady || im.Init != app.InitOther || im.CloudInit || im.Vmlinux == "" || im.Source != app.ImageImported {
		t.Fatalf("imported: %+v %v", im, err)
	}
	vm := &app.VM{ID: "vm-using-imp", Name: "user-of-imp", Image: "imp", State: app.VMDefined, VCPUs: 1, MemoryMiB: 64, MAC: "02:00:00:00:00:09"}
	if err := db.CreateVM(ctx, vm, "hash-of-imp-user", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "", "imp", operator); app.ErrorCode(err) != app.ECONFLICT || !strings.Contains(err.Error(), "user-of-imp") {
		t.Errorf("delete in use: %v", err)
	}
	if got, _ := s.Get(ctx, "", "imp"); len(got.UsedBy) != 1 || got.UsedBy[0] != "user-of-imp" {
		t.Errorf("used by %v", got.UsedBy)
	}
	db.DeleteVM(ctx, vm.ID, nil)
	if err := s.Delete(ctx, "", "imp", operator); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Dir("imp")); !os.IsNotExist(err) {
		t.Error("the deleted image's files remain")
	}
	if _, err := s.Get(ctx, "", "imp"); app.ErrorCode(err) != app.ENOTFOUND {
		t.Errorf("after delete: %v", err)
	}
}
