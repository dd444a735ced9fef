// Package realguest runs the seed document's story on a booted Debian guest with real
// cloud-init, under QEMU (software emulation here), inside a network namespace the test
// creates. It is slow (minutes) and opt-in: `make e2e` runs it.
package realguest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/crypto/ssh"

	"hearth/app/hypervisor/qemu/qemutest"
	"hearth/app/testenv"
)

// image returns the cached image for a variant, building it when its build script changed
// (the cache key is the script's hash).
func image(t *testing.T, variant string) string {
	t.Helper()
	script := filepath.Join("..", "images", "build-"+variant+".sh")
	b, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	dir := filepath.Join(qemutest.CacheDir(), "images", variant+"-"+hex.EncodeToString(sum[:6]))
	if _, err := os.Stat(filepath.Join(dir, "rootfs.ext4")); err == nil {
		return dir
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		testenv.Missing(t, "mmdebstrap", err)
	}
	start := time.Now()
	out, err := exec.Command("sh", script, dir+".tmp").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir + ".tmp")
		t.Fatalf("build %s image: %v\n%s", variant, err, out)
	}
	if err := os.Rename(dir+".tmp", dir); err != nil {
		t.Fatal(err)
	}
	t.Logf("built the %s image in %.0f s", variant, time.Since(start).Seconds())
	return dir
}

type client struct {
	t     *testing.T
	base  string
	token string
}

func (c client) do(method, path, body string) (int, map[string]any) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

func TestSystemdGuest(t *testing.T) { runVariant(t, "systemd") }

func runVariant(t *testing.T, variant string) {
	if os.Getenv("HEARTH_E2E") == "" {
		t.Skip("real-guest end to end: run make e2e (HEARTH_E2E=1)")
	}
	// The image is built (or found in the cache) before entering the test's network
	// namespace, which has no route to Debian's mirror.
	img := image(t, variant)
	if testenv.InOwnNetns(t) {
		return
	}
	if lo, err := netlink.LinkByName("lo"); err != nil || netlink.LinkSetUp(lo) != nil {
		t.Fatalf("bring lo up: %v", err)
	}
	qemutest.QEMU(t)
	bin := os.Getenv("HEARTH_BIN")
	if bin == "" {
		t.Fatal("HEARTH_BIN must name the hearth binary (make e2e builds it with the agents embedded)")
	}
	l, _ := net.Listen("tcp", "0.0.0.0:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	data := t.TempDir()
	env := append(os.Environ(), "HEARTH_DATA_DIR="+data, fmt.Sprintf("HEARTH_LISTEN=0.0.0.0:%d", port),
		fmt.Sprintf("HEARTH_PUBLIC_URL=http://10.77.0.1:%d", port), "HEARTH_HYPERVISOR=qemu",
		"HEARTH_BRIDGE_CIDR=10.77.0.1/24", "HEARTH_ALLOCATE_IPS=1", "HEARTH_METRICS_INTERVAL=2s",
		"HEARTH_ADMIN_PASSWORD=e2e-admin-password")
	tokenOut, err := exec.Command(bin, "token", "create", "e2e", "--data-dir", data).CombinedOutput()
	if err != nil {
		t.Fatalf("token: %v %s", err, tokenOut)
	}
	logf, _ := os.Create(filepath.Join(data, "manager.log"))
	srv := exec.Command(bin, "serve")
	srv.Env, srv.Stdout, srv.Stderr = env, logf, logf
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Process.Signal(os.Interrupt)
		srv.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(data, "manager.log"))
			t.Logf("manager log (tail):\n%s", tail(string(b), 4000))
		}
	})
	c := client{t: t, base: fmt.Sprintf("http://127.0.0.1:%d", port), token: strings.TrimSpace(string(tokenOut))}
	for i := 0; ; i++ {
		if resp, err := http.Get(c.base + "/healthz"); err == nil {
			resp.Body.Close()
			break
		}
		if i > 100 {
			t.Fatal("manager did not come up")
		}
		time.Sleep(100 * time.Millisecond)
	}
	body, _ := json.Marshal(map[string]any{"name": "e2e-" + variant, "vcpus": 2, "memory_mib": 768,
		"kernel": filepath.Join(img, "vmlinuz"), "initrd": filepath.Join(img, "initrd.img"), "rootfs": filepath.Join(img, "rootfs.ext4"),
		"boot_args": "console=ttyS0 root=/dev/vda rw panic=-1"})
	status, vm := c.do("POST", "/v1/vms", string(body))
	if status != 201 || vm["provisioned"] != true {
		t.Fatalf("create: %d %v", status, vm)
	}
	id := vm["id"].(string)
	t.Logf("VM %s at %v", id, vm["address"])
	// Hypervisors outlive the manager on purpose (it re-attaches after a restart); a test
	// that fails half-way must not leave its guest running.
	t.Cleanup(func() { exec.Command("pkill", "-KILL", "-f", "hearth-"+id).Run() })
	start := time.Now()
	if status, out := c.do("POST", "/v1/vms/"+id+"/start", ""); status != 200 {
		t.Fatalf("start: %d %v", status, out)
	}
	console := func() string {
		b, _ := os.ReadFile(filepath.Join(data, "vms", id, "run", "console.log"))
		return tail(string(b), 3000)
	}
	var callbackAt time.Time
	deadline := time.Now().Add(6 * time.Minute)
	for callbackAt.IsZero() {
		if _, v := c.do("GET", "/v1/vms/"+id, ""); v["guest_ip"] != nil {
			callbackAt = time.Now()
			t.Logf("boot to guest IP registration: %.0f s (%v, source %v)", callbackAt.Sub(start).Seconds(), v["guest_ip"], v["guest_ip_source"])
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no guest IP registered; console:\n%s", console())
		}
		time.Sleep(time.Second)
	}
	for {
		_, m := c.do("GET", "/v1/vms/"+id+"/metrics", "")
		if m["status"] == "live" && m["source"] == "agent" && m["cpu_usage_percent"] != nil {
			t.Logf("registration to first agent sample: %.0f s (cpu %.1f %%, memory %.1f %%, agent %v)", time.Since(callbackAt).Seconds(),
				m["cpu_usage_percent"], m["memory_usage_percent"], m["agent_version"])
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent never live: %v; console:\n%s", m, console())
		}
		time.Sleep(time.Second)
	}
	// Stop the agent inside the guest, over SSH with Hearth's own key as user hearth,
	// pinning the host key the seed injected: the badge must turn to host fallback.
	_, vmNow := c.do("GET", "/v1/vms/"+id, "")
	if err := guestSSH(t, data, vmNow["host_key"].(string), "sudo systemctl stop hearth-agent"); err != nil {
		t.Fatalf("stop the agent over SSH: %v", err)
	}
	stopped := time.Now()
	for {
		_, m := c.do("GET", "/v1/vms/"+id+"/metrics", "")
		if m["status"] == "host" {
			t.Logf("agent stopped in the guest to host-fallback badge: %.1f s (interval 2 s)", time.Since(stopped).Seconds())
			break
		}
		if time.Since(stopped) > 30*time.Second {
			t.Fatalf("still %v after the agent stopped", m["status"])
		}
		time.Sleep(250 * time.Millisecond)
	}
	// One-click install into the running guest: the agent comes back.
	status, job := c.do("POST", "/v1/vms/"+id+"/agent/install", "")
	if status != 202 {
		t.Fatalf("install: %d %v", status, job)
	}
	installAt := time.Now()
	for {
		_, j := c.do("GET", "/v1/vms/"+id+"/agent/install", "")
		if j["state"] == "done" {
			t.Logf("agent install into the running %s guest: %.0f s", variant, time.Since(installAt).Seconds())
			break
		}
		if j["state"] == "failed" || time.Since(installAt) > 3*time.Minute {
			t.Fatalf("install: %v; console:\n%s", j, console())
		}
		time.Sleep(time.Second)
	}
	for {
		_, m := c.do("GET", "/v1/vms/"+id+"/metrics", "")
		if m["status"] == "live" && m["source"] == "agent" {
			break
		}
		if time.Since(installAt) > 4*time.Minute {
			t.Fatalf("agent not live after the install: %v", m)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("whole %s scenario so far: %.0f s", variant, time.Since(start).Seconds())
	c.do("POST", "/v1/vms/"+id+"/stop", "")
	for i := 0; i < 90; i++ {
		if _, v := c.do("GET", "/v1/vms/"+id, ""); v["state"] == "stopped" {
			break
		}
		time.Sleep(time.Second)
	}
	if status, _ := c.do("DELETE", "/v1/vms/"+id, ""); status != 204 {
		t.Errorf("delete: %d", status)
	}

}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// guestSSH runs a command in the guest as user hearth with the manager's key, accepting
// only the host key Hearth injected through the seed.
func guestSSH(t *testing.T, dataDir, hostKey, cmd string) error {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(dataDir, "ssh", "hearth_ed25519"))
	if err != nil {
		return err
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		return err
	}
	want, _, _, _, err := ssh.ParseAuthorizedKey([]byte(hostKey))
	if err != nil {
		return fmt.Errorf("recorded host key: %w", err)
	}
	cfg := &ssh.ClientConfig{User: "hearth", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(want), HostKeyAlgorithms: []string{want.Type()}, Timeout: 15 * time.Second}
	client, err := ssh.Dial("tcp", "10.77.0.2:22", cfg)
	if err != nil {
		return err
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	out, err := sess.CombinedOutput(cmd)
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}
