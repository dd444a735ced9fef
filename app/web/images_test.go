package web

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hearth/app"
	"hearth/app/image"
	"hearth/internal/testkit/storetest"
	pimage "hearth/provision/image"
)

// imagesEnv is an env whose images are made by a stand-in for mmdebstrap (it writes the
// files at once), and whose image directory holds files an import may name.
func imagesEnv(t *testing.T) (*env, *image.Service) {
	t.Helper()
	e := newEnv(t, storetest.SQLite(t))
	im := &image.Service{DB: e.db, DataDir: e.dataDir, Build: func(ctx context.Context, spec pimage.Spec, dir string, step, log func(string)) ([]app.ImageFile, error) {
		os.MkdirAll(dir, 0o750)
		for _, st := range pimage.BuildSteps {
			step(st)
		}
		for _, f := range []string{pimage.KernelFile, pimage.VmlinuxFile, pimage.RootfsFile} {
			os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644)
		}
		return pimage.Describe(dir)
	}}
	e.srv.Config.Handler = New(Deps{VMs: e.vms, Auth: e.auth, Images: im, Ping: e.db.Ping})
	t.Cleanup(im.Wait)
	return e, im
}

func TestImagesAPI(t *testing.T) {
	e, im := imagesEnv(t)
	for _, c := range []struct {
		body, want string
		status     int
	}{
		{`{"name":"x"}`, "give exactly one", 400},
		{`{"name":"x","build":{},"import":{}}`, "give exactly one", 400},
		{`{"name":"Bad","build":{}}`, `"name"`, 400},
		{`{"name":"x","build":{"init":"runit"}}`, `"init"`, 400},
		{`{"name":"x","build":{"size":"10"}}`, `"size"`, 400},
		{`{"name":"x","import":{"kernel":"/etc/shadow","rootfs":"/dev/vda"}}`, "outside the image directories", 400},
		{`{"name":"x","import":{"rootfs":"/x"}}`, `"kernel":"is required"`, 400},
		{`{"name":"x","built":{}}`, "unknown field", 400},
	} {
		status, body := e.api("POST", "/v1/images", c.body, "")
		if status != c.status || !strings.Contains(body, c.want) {
			t.Errorf("POST %s: %d %s, want %d with %q", c.body, status, body, c.status, c.want)
		}
	}
	status, body := e.api("POST", "/v1/images", `{"name":"debian-12","build":{"release":"bookworm","init":"openrc"}}`, "")
	if status != http.StatusAccepted || !strings.Contains(body, `"state":"building"`) {
		t.Fatalf("build: %d %s", status, body)
	}
	im.Wait()
	status, body = e.api("GET", "/v1/images/debian-12", "", "")
	var got struct {
		State, Init, Kernel string
		Files               []app.ImageFile
		Steps               []app.JobStep
	}
	json.Unmarshal([]byte(body), &got)
	if status != 200 || got.State != "ready" || got.Init != "openrc" || len(got.Files) != 3 || len(got.Steps) != 5 {
		t.Fatalf("after the build: %d %s", status, body)
	}
	if status, _ := e.api("GET", "/v1/images/nope", "", ""); status != 404 {
		t.Errorf("unknown image: %d", status)
	}
	// A VM from the image; then the image cannot go.
	status, body = e.api("POST", "/v1/vms", `{"name":"from-img","image":"debian-12","provision":false}`, "")
	if status != 201 || !strings.Contains(body, `"image":"debian-12"`) {
		t.Fatalf("create from the image: %d %s", status, body)
	}
	if status, body := e.api("POST", "/v1/vms", `{"name":"other","image":"nope","provision":false}`, ""); status != 400 || !strings.Contains(body, `no image is named \"nope\"`) {
		t.Errorf("create from an unknown image: %d %s", status, body)
	}
	if status, body := e.api("DELETE", "/v1/images/debian-12", "", ""); status != 409 || !strings.Contains(body, "from-img") {
		t.Errorf("delete in use: %d %s", status, body)
	}
	_, list := e.api("GET", "/v1/images", "", "")
	if !strings.Contains(list, `"used_by":["from-img"]`) {
		t.Errorf("list: %s", list)
	}
	var vm struct{ ID string }
	json.Unmarshal([]byte(body), &vm)
	_, v := e.api("GET", "/v1/vms", "", "")
	id := v[strings.Index(v, `"id":"`)+6:]
	id = id[:strings.Index(id, `"`)]
	if status, _ := e.api("DELETE", "/v1/vms/"+id, "", ""); status != 204 {
		t.Fatalf("delete the VM: %d", status)
	}
	if status, _ := e.api("DELETE", "/v1/images/debian-12", "", ""); status != 204 {
		t.Errorf("delete unused: %d", status)
	}
}

// TestImagesPages: the Images page lists, builds (then follows the making until it stops
// polling), refuses with the form's errors, and the New VM form offers ready images.
func TestImagesPages(t *testing.T) {
	e, im := imagesEnv(t)
	e.signIn()
	status, _, body := e.form("/images", url.Values{"kind": {"build"}, "name": {"Bad Name"}, "init": {"systemd"}}, nil)
	if status != 400 || !strings.Contains(body, `data-error-for="name"`) {
		t.Errorf("bad build form: %d", status)
	}
	status, hdr, _ := e.form("/images", url.Values{"kind": {"build"}, "name": {"deb"}, "init": {"systemd"}, "size": {"1G"}}, nil)
	if status != http.StatusSeeOther || hdr.Get("Location") != "/images/deb" {
		t.Fatalf("build form: %d %s", status, hdr.Get("Location"))
	}
	im.Wait()
	status, _, panel := e.do("GET", "/images/deb/progress", "", map[string]string{"HX-Request": "true"})
	if status != 286 || !strings.Contains(panel, `data-state="ready"`) || strings.Count(panel, `data-step-state="done"`) != 5 {
		t.Errorf("progress once ready: %d\n%.300s", status, panel)
	}
	_, _, page := e.do("GET", "/images", "", nil)
	if !strings.Contains(page, `data-image="deb"`) || !strings.Contains(page, `data-image-state="ready"`) {
		t.Error("the Images page does not list deb as ready")
	}
	_, _, form := e.do("GET", "/vms/new", "", nil)
	if !strings.Contains(form, `<option value="deb">deb (systemd, cloud-init)</option>`) {
		t.Errorf("the New VM form does not offer deb")
	}
	status, _, body = e.form("/images", url.Values{"kind": {"import"}, "name": {"imp"}, "kernel": {"/etc/passwd"}, "rootfs": {"/etc/passwd"}}, nil)
	if status != 400 || !strings.Contains(body, "outside the image directories") {
		t.Errorf("import from outside: %d", status)
	}
}
