package cloudinit

import (
	"bytes"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"hearth/internal/testkit/cloudinittest"
	"hearth/internal/testkit/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func testParams(t *testing.T) Params {
	t.Helper()
	priv, err := os.ReadFile("testdata/host_ed25519")
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := os.ReadFile("testdata/host_ed25519.pub")
	mgr, _ := os.ReadFile("testdata/manager_ed25519.pub")
	return Params{VMID: "k3j2h4g5f6d7s8a9", Hostname: "web-1", MAC: "02:12:34:56:78:9a",
		ManagerURL: "http://192.168.50.1:8080", AgentToken: "hag_agenttoken0123456789", RegistrationToken: "hrg_regtoken0123456789",
		ManagerSSHKey: strings.TrimSpace(string(mgr)), HostKeyPrivate: string(priv), HostKeyPublic: strings.TrimSpace(string(pub))}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s (run go test ./provision/cloudinit -update if the change is intended)\n--- got:\n%s", name, p, got)
	}
}

func TestRenderDHCP(t *testing.T) {
	d, err := Render(testParams(t))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "user-data", d.UserData)
	golden(t, "meta-data", d.MetaData)
	if d.NetworkConfig != nil {
		t.Error("network-config rendered without a static address")
	}
	cloudinittest.Schema(t, d.UserData)
	for _, want := range []string{"#cloud-config\n", "HEARTH_AGENT_TOKEN=hag_agenttoken0123456789", "HEARTH_VM_ID=k3j2h4g5f6d7s8a9",
		`permissions: "0600"`, "BEGIN OPENSSH PRIVATE KEY", "[sh, /usr/local/lib/hearth/install.sh]"} {
		if !bytes.Contains(d.UserData, []byte(want)) {
			t.Errorf("user-data lacks %q", want)
		}
	}
}

func TestRenderStatic(t *testing.T) {
	p := testParams(t)
	p.Static = &Static{Address: "192.168.50.10/24", Gateway: "192.168.50.1", DNS: []string{"192.168.50.1", "fd00::53"}}
	d, err := Render(p)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "network-config", d.NetworkConfig)
	cloudinittest.Schema(t, d.UserData)
}

// TestSchemaCatchesErrors proves the schema check can fail: a broken document is refused.
func TestSchemaCatchesErrors(t *testing.T) {
	ci, err := exec.LookPath("cloud-init")
	if err != nil {
		testenv.Missing(t, "cloud-init", err)
	}
	d, _ := Render(testParams(t))
	broken := bytes.Replace(d.UserData, []byte(`permissions: "0600"`), []byte(`permissions: 0600`), 1)
	p := filepath.Join(t.TempDir(), "user-data")
	os.WriteFile(p, broken, 0o600)
	if out, err := exec.Command(ci, "schema", "--config-file", p).CombinedOutput(); err == nil {
		t.Errorf("an integer permissions value passed the schema check:\n%s", out)
	}
}

func TestRenderRefusesUnsafeValues(t *testing.T) {
	for name, mutate := range map[string]func(*Params){
		"hostname with newline": func(p *Params) { p.Hostname = "a\nruncmd: [reboot]" },
		"token with quote":      func(p *Params) { p.AgentToken = "abc'def0123456789" },
		"url with backtick":     func(p *Params) { p.ManagerURL = "http://x/`reboot`" },
		"ftp url":               func(p *Params) { p.ManagerURL = "ftp://x" },
		"bad static":            func(p *Params) { p.Static = &Static{Address: "10.0.0.5"} },
		"static without mac":    func(p *Params) { p.MAC = ""; p.Static = &Static{Address: "10.0.0.5/24"} },
	} {
		p := testParams(t)
		mutate(&p)
		if _, err := Render(p); err == nil {
			t.Errorf("%s: rendered", name)
		}
	}
}

func TestScriptsParse(t *testing.T) {
	for name, body := range map[string]string{"install.sh": installScript, "callback.sh": callbackScript} {
		p := filepath.Join(t.TempDir(), name)
		os.WriteFile(p, []byte(body), 0o755)
		if out, err := exec.Command("sh", "-n", p).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v\n%s", name, err, out)
		}
	}
}

// TestCallbackScript runs the real callback script against a stand-in manager on loopback,
// once with curl and once with wget on the PATH, as a guest's cloud-init would.
func TestCallbackScript(t *testing.T) {
	var mu sync.Mutex
	var got []string
	fails := 1 // the first attempt is refused, to exercise the retry
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if fails > 0 {
			fails--
			http.Error(w, "not yet", 503)
			return
		}
		b := new(bytes.Buffer)
		b.ReadFrom(r.Body)
		got = append(got, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization")+" "+r.Header.Get("Content-Type")+" "+b.String())
	}))
	defer srv.Close()
	p := testParams(t)
	p.ManagerURL = srv.URL
	for _, tool := range []string{"curl", "wget"} {
		t.Run(tool, func(t *testing.T) {
			toolPath, err := exec.LookPath(tool)
			if err != nil {
				testenv.Missing(t, tool, err)
			}
			dir := t.TempDir()
			bin := filepath.Join(dir, "bin")
			os.Mkdir(bin, 0o755)
			// A PATH with exactly one HTTP client, and the basics the script uses.
			for _, b := range []string{"sh", "awk", "ip", "hostname", "date", "sleep", "cat"} {
				if p, err := exec.LookPath(b); err == nil {
					os.Symlink(p, filepath.Join(bin, b))
				}
			}
			os.Symlink(toolPath, filepath.Join(bin, tool))
			conf := filepath.Join(dir, "hearth-agent.conf")
			os.WriteFile(conf, []byte(p.AgentConf()), 0o600)
			script := filepath.Join(dir, "callback.sh")
			os.WriteFile(script, []byte(callbackScript), 0o755)
			logf := filepath.Join(dir, "callback.log")
			cmd := exec.Command(filepath.Join(bin, "sh"), script)
			cmd.Env = []string{"PATH=" + bin, "HEARTH_CONF=" + conf, "HEARTH_CALLBACK_LOG=" + logf, "HEARTH_CALLBACK_SPEEDUP=4", "HEARTH_CALLBACK_ATTEMPTS=4"}
			err = cmd.Run()
			log, _ := os.ReadFile(logf)
			if err != nil {
				t.Fatalf("callback: %v\nlog:\n%s", err, log)
			}
			mu.Lock()
			last := got[len(got)-1]
			mu.Unlock()
			want := "POST /v1/vms/k3j2h4g5f6d7s8a9/guest-ip Bearer hrg_regtoken0123456789 application/json {\"guest_ip\": \""
			if !strings.HasPrefix(last, want) || !strings.Contains(string(log), "registered guest IP") {
				t.Errorf("manager got %q\nlog:\n%s", last, log)
			}
		})
	}
}
