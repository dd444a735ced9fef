package web

import (
	"bytes"
	"encoding/json"
	"net/url"
	"os"
	"strings"
	"testing"

	"hearth/app"
	"hearth/internal/testkit/storetest"
	"hearth/provision"
	"hearth/provision/seed"
)

// provisionedEnv is an env whose VMs get real seeds, with a stand-in agent binary.
func provisionedEnv(t *testing.T, agent []byte) *env {
	t.Helper()
	e := newEnv(t, storetest.SQLite(t))
	key, err := provision.LoadOrCreateManagerKey(e.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	sealKey, err := provision.LoadOrCreateSealKey(e.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	e.vms.WithSeeder(&provision.Provisioner{PublicURL: "http://10.0.0.1:8080", ManagerKey: key, SealKey: sealKey,
		Agent: func(arch string) ([]byte, error) {
			if agent == nil {
				return nil, app.Errorf(app.EUNAVAILABLE, "this manager was built without a hearth-agent for linux/%s", arch)
			}
			return agent, nil
		}})
	return e
}

func TestAPIProvisionedVMAndSeedDownload(t *testing.T) {
	agent := []byte("\x7fELF stand-in agent")
	e := provisionedEnv(t, agent)
	status, body := e.api("POST", "/v1/vms", `{"name":"seeded"}`, "")
	if status != 201 {
		t.Fatalf("create: %d %s", status, body)
	}
	var v vmJSON
	json.Unmarshal([]byte(body), &v)
	if !v.Provisioned || v.SeedURL != "/v1/vms/"+v.ID+"/seed.iso" || !strings.HasPrefix(v.HostKey, "ssh-ed25519 ") {
		t.Fatalf("created: %s", body)
	}
	if strings.Contains(body, "hag_") {
		t.Error("the agent token leaked into the API")
	}
	status, hdr, iso := e.do("GET", v.SeedURL, "", map[string]string{"Authorization": "Bearer " + e.token})
	if status != 200 || !strings.Contains(hdr.Get("Content-Disposition"), "seeded-seed.iso") || hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("seed download: %d %v", status, hdr)
	}
	// The download is the real image: read it back.
	p := t.TempDir() + "/seed.iso"
	writeFile(t, p, []byte(iso))
	files, err := seed.Read(p)
	if err != nil || !bytes.Equal(files["hearth-agent"], agent) || !strings.Contains(string(files["user-data"]), "HEARTH_VM_ID="+v.ID) {
		t.Errorf("downloaded seed: %v, files %d", err, len(files))
	}
	// Only operators get it: not the guest's own registration token, not anonymous.
	if status, _ := e.api("GET", v.SeedURL, "", v.RegistrationToken); status != 403 {
		t.Errorf("seed with a registration token: %d", status)
	}
	if status, _, _ := e.do("GET", v.SeedURL, "", nil); status != 401 {
		t.Errorf("seed anonymously: %d", status)
	}
	// Opting out gives a VM with no seed.
	status, body = e.api("POST", "/v1/vms", `{"name":"plain","provision":false}`, "")
	v = vmJSON{}
	json.Unmarshal([]byte(body), &v)
	if status != 201 || v.Provisioned || v.SeedURL != "" {
		t.Errorf("unprovisioned create: %d %s", status, body)
	}
	if status, _ := e.api("GET", "/v1/vms/"+v.ID+"/seed.iso", "", ""); status != 404 {
		t.Errorf("seed of an unprovisioned VM: %d", status)
	}
	if status, body := e.api("PATCH", "/v1/vms/"+v.ID, `{"provision":true}`, ""); status != 400 || !strings.Contains(body, "cannot change") {
		t.Errorf("patch provision: %d %s", status, body)
	}
}

func TestProvisioningUnavailable(t *testing.T) {
	e := provisionedEnv(t, nil)
	status, body := e.api("POST", "/v1/vms", `{"name":"x"}`, "")
	if status != 503 || !strings.Contains(body, "built without a hearth-agent") {
		t.Errorf("create without an embedded agent: %d %s", status, body)
	}
	if status, body := e.api("GET", "/v1/vms", "", ""); status != 200 || strings.Contains(body, `"id"`) {
		t.Errorf("a VM was created anyway: %s", body)
	}
	// The form says why instead of offering the box.
	e.signIn()
	_, _, page := e.do("GET", "/vms/new", "", nil)
	if !strings.Contains(page, `data-testid="provision-unavailable"`) || strings.Contains(page, `name="provision"`) {
		t.Error("the create form offers provisioning it cannot do")
	}
}

func TestUIProvisionedCreate(t *testing.T) {
	e := provisionedEnv(t, []byte("agent"))
	e.signIn()
	_, _, page := e.do("GET", "/vms/new", "", nil)
	if !strings.Contains(page, `name="provision"`) || !strings.Contains(page, "checked") {
		t.Error("the create form does not offer provisioning, ticked")
	}
	status, hdr, _ := e.form("/vms", url.Values{"name": {"ui-seeded"}, "vcpus": {"1"}, "memory_mib": {"256"}, "provision": {"on"}}, nil)
	if status != 303 {
		t.Fatalf("create: %d", status)
	}
	_, _, page = e.do("GET", hdr.Get("Location"), "", nil)
	if !strings.Contains(page, `data-testid="seed-link"`) || !strings.Contains(page, `data-testid="host-key"`) {
		t.Error("VM page lacks the seed link or host key")
	}
	status, _, iso := e.do("GET", hdr.Get("Location")+"/seed.iso", "", nil)
	if status != 200 || len(iso) < 32<<10 {
		t.Errorf("seed through the UI session: %d, %d bytes", status, len(iso))
	}
}

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
