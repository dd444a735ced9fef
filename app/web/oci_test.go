package web

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hearth/internal/testkit/ocitest"
	"hearth/internal/testkit/testenv"
)

// guestArchive is a `docker save` tarball of a one-layer image with an init and
// cloud-init, and no kernel.
func guestArchive(t *testing.T) []byte {
	t.Helper()
	img := ocitest.Image(t, "amd64", ocitest.Layer(t, ocitest.Exe("sbin/init", "#!\n"), ocitest.Exe("usr/bin/cloud-init", "#!\n")))
	b, err := os.ReadFile(ocitest.DockerSave(t, img))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// upload posts the OCI form as a browser does: multipart, same-origin.
func (e *env) upload(fields map[string]string, archive []byte) (int, http.Header, string) {
	e.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	if archive != nil {
		w, _ := mw.CreateFormFile("archive", "image.tar")
		w.Write(archive)
	}
	mw.Close()
	return e.do(http.MethodPost, "/images/oci", body.String(), map[string]string{"Content-Type": mw.FormDataContentType(), "Sec-Fetch-Site": "same-origin"})
}

// TestOCIImports: the API refuses what cannot be imported, field by field; the Images
// page's OCI form streams an uploaded archive in, the image is made with a kernel borrowed
// from another image, and the upload is removed whatever happens to it.
func TestOCIImports(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root (OCI images keep their files' owners)", "not root")
	}
	e, im := imagesEnv(t)
	for _, c := range []struct{ body, want string }{
		{`{"name":"o","import":{"oci_archive":"/etc/passwd"}}`, "outside the image directories"},
		{`{"name":"o","import":{"oci":"debian:12","rootfs":"/x"}}`, "not both"},
		{`{"name":"o","import":{"oci":"Not A Ref::"}}`, `"oci":"is not an image reference`},
		{`{"name":"o","import":{"oci":"debian:12","kernel_from":"nope"}}`, `"kernel_from":"no ready image is named nope"`},
		{`{"name":"o","import":{"oci":"debian:12","size":"lots"}}`, `"size"`},
		{`{"name":"o","import":{"kernel_from":"nope"}}`, `"oci":"give a registry reference`},
	} {
		if status, body := e.api("POST", "/v1/images", c.body, ""); status != 400 || !strings.Contains(body, c.want) {
			t.Errorf("POST %s: %d %s, want 400 with %q", c.body, status, body, c.want)
		}
	}
	e.signIn()
	if status, _, _ := e.form("/images", url.Values{"kind": {"build"}, "name": {"deb"}, "init": {"systemd"}}, nil); status != http.StatusSeeOther {
		t.Fatalf("build deb: %d", status)
	}
	im.Wait()
	uploads := func() []string {
		left, _ := filepath.Glob(filepath.Join(e.dataDir, "images", ".upload-*"))
		return left
	}
	_, _, page := e.do("GET", "/images", "", nil)
	if !strings.Contains(page, `data-testid="oci-form"`) || !strings.Contains(page, `<option value="deb">From image deb</option>`) {
		t.Fatal("the Images page offers no OCI import with deb's kernel")
	}

	status, hdr, body := e.upload(map[string]string{"name": "app", "kernel_from": "deb", "size": "64M"}, guestArchive(t))
	if status != http.StatusSeeOther || hdr.Get("Location") != "/images/app" {
		t.Fatalf("upload: %d %s %.500s", status, hdr.Get("Location"), body)
	}
	im.Wait()
	_, got := e.api("GET", "/v1/images/app", "", "")
	for _, want := range []string{`"state":"ready"`, `"source":"oci"`, `"reference":"uploaded archive, kernel from deb"`, `"cloud_init":true`, `"init":"other"`} {
		if !strings.Contains(got, want) {
			t.Errorf("the imported image lacks %s: %s", want, got)
		}
	}
	if left := uploads(); len(left) > 0 {
		t.Errorf("uploads left: %v", left)
	}

	// Not an archive: the job fails at its first step, saying what the file is not.
	if status, _, _ := e.upload(map[string]string{"name": "junk", "kernel_from": "deb"}, bytes.Repeat([]byte("text "), 500)); status != http.StatusSeeOther {
		t.Fatalf("junk upload: %d", status)
	}
	im.Wait()
	if _, got := e.api("GET", "/v1/images/junk", "", ""); !strings.Contains(got, `"state":"failed"`) || !strings.Contains(got, "is not a tar archive") {
		t.Errorf("junk: %s", got)
	}
	// Refused at once (a bad name): the form again, the upload gone.
	status, _, body = e.upload(map[string]string{"name": "Bad Name"}, guestArchive(t))
	if status != 400 || !strings.Contains(body, `data-error-for="name"`) || !strings.Contains(body, "Choose the archive again") {
		t.Errorf("bad name: %d", status)
	}
	if left := uploads(); len(left) > 0 {
		t.Errorf("uploads left: %v", left)
	}
	// Without fetch metadata or a token, the upload is refused before it is read.
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	mw.WriteField("name", "sneaky")
	mw.Close()
	if status, _, _ := e.do(http.MethodPost, "/images/oci", mp.String(), map[string]string{"Content-Type": mw.FormDataContentType()}); status != 400 && status != 403 {
		t.Errorf("upload without CSRF proof: %d", status)
	}
	if _, got := e.api("GET", "/v1/images/sneaky", "", ""); !strings.Contains(got, "not_found") {
		t.Errorf("sneaky: %s", got)
	}
}
