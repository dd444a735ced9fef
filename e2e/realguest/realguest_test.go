// Package realguest runs the seed document's story on booted Debian guests with real
// cloud-init, under QEMU (software emulation here), inside a network namespace the test
// creates, driven through the UI in a real Chromium where a person would click. It is slow
// (minutes per guest) and opt-in: `make e2e` runs it.
package realguest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/vishvananda/netlink"
	"golang.org/x/crypto/ssh"

	"hearth/app/hypervisor/hostnet"
	"hearth/internal/testkit/browsertest"
	"hearth/internal/testkit/qemutest"
	"hearth/internal/testkit/testenv"
	pimage "hearth/provision/image"
)

const (
	interval   = 2 * time.Second // the manager's metrics interval in this test
	bootBudget = 6 * time.Minute // start → callback and first agent sample, under TCG
)

func TestSystemdGuest(t *testing.T) { runVariant(t, "systemd") }
func TestOpenRCGuest(t *testing.T)  { runVariant(t, "openrc") }

// builtImage returns the directory of the variant's image, built by the product's own
// builder (provision/image, as `hearth image build` runs it) and cached under
// HEARTH_E2E_CACHE/images keyed by image.Recipe, a hash of the build script and the spec:
// a changed package list or script builds anew, and older builds are pruned.
func builtImage(t *testing.T, variant string) string {
	t.Helper()
	spec := pimage.Spec{Init: variant}
	if err := spec.Normalize(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(qemutest.CacheDir(), "images", variant+"-"+pimage.Recipe(spec))
	if _, err := os.Stat(filepath.Join(dir, pimage.RootfsFile)); err == nil {
		t.Logf("timing: %s image: cached in %s", variant, dir)
		return dir
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		testenv.Missing(t, "mmdebstrap", err)
	}
	start := time.Now()
	os.RemoveAll(dir + ".tmp")
	var log []string
	step := func(name string) { t.Logf("%s image: step %s at %.0f s", variant, name, time.Since(start).Seconds()) }
	if _, err := pimage.Build(context.Background(), spec, dir+".tmp", step, func(l string) { log = append(log, l) }); err != nil {
		t.Fatalf("build %s image: %v\n%s", variant, err, tail(strings.Join(log, "\n"), 4000))
	}
	if err := os.Rename(dir+".tmp", dir); err != nil {
		t.Fatal(err)
	}
	t.Logf("timing: %s image: built in %.0f s (%s)", variant, time.Since(start).Seconds(), dir)
	// Images of older recipes are never used again.
	old, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), variant+"-*"))
	for _, o := range old {
		if o != dir {
			os.RemoveAll(o)
		}
	}
	return dir
}

// artifacts is the folder a failed run leaves behind: HEARTH_ARTIFACTS/realguest-VARIANT,
// or a temporary folder that is removed when the test passes.
func artifacts(t *testing.T, variant string) string {
	t.Helper()
	if base := browsertest.ArtifactsDir(); base != "" {
		dir := filepath.Join(base, "realguest-"+variant)
		os.RemoveAll(dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	dir, err := os.MkdirTemp("", "hearth-e2e-"+variant+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(dir)
		}
	})
	return dir
}

func runVariant(t *testing.T, variant string) {
	if os.Getenv("HEARTH_E2E") == "" {
		t.Skip("real-guest end to end: run make e2e (HEARTH_E2E=1)")
	}
	// The image is built (or found in the cache) before entering the test's network
	// namespace, which has no route to Debian's mirror.
	img := builtImage(t, variant)
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
	art := artifacts(t, variant)
	t.Setenv("HEARTH_ARTIFACTS", art) // screenshots go beside the logs
	scenarioStart := time.Now()

	// The manager, as an operator runs it after `make run`: its defaults but the QEMU
	// driver, a quick metrics interval and a patient stop. No network setting: as root it
	// makes its own bridge, allocates addresses and serves guests on the bridge.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	data := t.TempDir()
	env := append(os.Environ(), "HEARTH_DATA_DIR="+data, fmt.Sprintf("HEARTH_LISTEN=127.0.0.1:%d", port),
		"HEARTH_HYPERVISOR=qemu", "HEARTH_METRICS_INTERVAL="+interval.String(),
		"HEARTH_STOP_TIMEOUT=150s", // shutting down under software emulation takes its time
		"HEARTH_ADMIN_PASSWORD=e2e-admin-password")
	for _, k := range []string{"HEARTH_BRIDGE_CIDR", "HEARTH_ALLOCATE_IPS", "HEARTH_PUBLIC_URL", "HEARTH_IMAGE_DIRS"} {
		if os.Getenv(k) != "" {
			t.Fatalf("%s is set: this test runs the manager with its own network defaults", k)
		}
	}
	tokenOut, err := exec.Command(bin, "token", "create", "e2e", "--data-dir", data).CombinedOutput()
	if err != nil {
		t.Fatalf("token: %v %s", err, tokenOut)
	}
	// The built image into the manager, as `hearth image import` does it for an operator's
	// files: copied into the data dir, checked, inspected.
	imageName := "debian-" + variant
	importAt := time.Now()
	if out, err := exec.Command(bin, "image", "import", imageName, "--data-dir", data, "--kernel", filepath.Join(img, pimage.KernelFile),
		"--initrd", filepath.Join(img, pimage.InitrdFile), "--rootfs", filepath.Join(img, pimage.RootfsFile)).CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "cloud-init true") {
		t.Fatalf("image import: %v\n%s", err, out)
	}
	t.Logf("timing: %s image import: %.0f s", variant, time.Since(importAt).Seconds())
	base := filepath.Join(data, "images", imageName, pimage.RootfsFile)
	managerLog := filepath.Join(art, "manager.log")
	logf, err := os.Create(managerLog)
	if err != nil {
		t.Fatal(err)
	}
	srv := exec.Command(bin, "serve")
	srv.Env, srv.Stdout, srv.Stderr = env, logf, logf
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Process.Signal(os.Interrupt)
		srv.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(managerLog)
			t.Logf("manager log (tail):\n%s", tail(string(b), 3000))
			t.Logf("artefacts of this failed run (console log, manager log, screenshots): %s", art)
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

	ctx := browsertest.New(t, 25*time.Minute)
	pg := browsertest.Page{T: t, Ctx: ctx, Name: variant}
	step := pg.Step

	// Sign in, create a VM with provisioning, start it: all in the browser.
	step("sign in",
		chromedp.Navigate(c.base+"/vms/new"),
		chromedp.WaitVisible(`[data-testid=sign-in]`),
		chromedp.SendKeys(`#f-name`, "admin"),
		chromedp.SendKeys(`#f-password`, "e2e-admin-password"),
		chromedp.Click(`[data-testid=sign-in]`),
		chromedp.WaitVisible(`#f-image`),
	)
	// The Images page lists the imported image as ready, with what it is.
	step("the Images page", chromedp.Navigate(c.base+"/images"), chromedp.WaitVisible(`tr[data-image="`+imageName+`"][data-image-state=ready]`))
	if row := pg.Text("the image's row", `tr[data-image="`+imageName+`"]`); !strings.Contains(row, "cloud-init") || !strings.Contains(row, variant) {
		pg.Fail("the image's row says "+row, nil)
	}
	browsertest.Screenshot(t, ctx, variant+"-images")
	step("the New VM form", chromedp.Navigate(c.base+"/vms/new"), chromedp.WaitVisible(`#f-image`))
	if pg.Eval("provision box", `String(document.querySelector('#f-provision')?.checked)`) != "true" {
		pg.Fail("provisioning is not offered and ticked on the new-VM form", nil)
	}
	if got := pg.Eval("the image offered", `document.querySelector('#f-image option[value="`+imageName+`"]')?.textContent || ""`); got == "" {
		pg.Fail("the new-VM form does not offer the image "+imageName, nil)
	}
	// Names and a pick: no path, no boot arguments typed (Advanced stays closed).
	step("create a provisioned VM from the image",
		chromedp.SendKeys(`#f-name`, "e2e-"+variant),
		chromedp.SetValue(`#f-vcpus`, "2"),
		chromedp.SetValue(`#f-memory_mib`, "768"),
		chromedp.SetValue(`#f-image`, imageName),
	)
	if open := pg.Eval("Advanced closed", `String(document.querySelector('[data-testid=vm-advanced]').open)`); open != "false" {
		pg.Fail("Advanced is open on a fresh form", nil)
	}
	// The click navigates: a step of its own (see browsertest), then the VM's page.
	step("submit", chromedp.Click(`[data-testid=vm-submit]`))
	step("the VM's page", chromedp.WaitVisible(`[data-testid=vm-start]`))
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	i := strings.LastIndex(loc, "/vms/")
	if i < 0 {
		pg.Fail("creating the VM did not land on its page", nil)
	}
	id := loc[i+len("/vms/"):]
	_, vm := c.do("GET", "/v1/vms/"+id, "")
	if vm["provisioned"] != true || vm["name"] != "e2e-"+variant || vm["image"] != imageName {
		t.Fatalf("the VM the form made (%s): %v", id, vm)
	}
	guestIP := strings.Split(fmt.Sprint(vm["address"]), "/")[0]
	t.Logf("VM %s, allocated %s", id, guestIP)
	console := filepath.Join(data, "vms", id, "run", "console.log")
	// Hypervisors outlive the manager on purpose (it re-attaches after a restart): a test
	// that fails half-way must not leave its guest running. Registered before the copy
	// below so that the console is kept first (cleanups run last-in, first-out).
	t.Cleanup(func() { exec.Command("pkill", "-KILL", "-f", "hearth-"+id).Run() })
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(console); err == nil {
				os.WriteFile(filepath.Join(art, "console.log"), b, 0o644)
				t.Logf("guest console (tail):\n%s", tail(string(b), 3000))
			}
			browsertest.Screenshot(t, ctx, "at-failure")
		}
	})

	start := time.Now()
	// Lifecycle buttons sit in the panel the page swaps every 3 s: clicked by ClickButton.
	pg.ClickButton("start", `[data-testid=vm-start]`)
	step("running", chromedp.WaitVisible(`#vm-status[data-state=running]`))

	// Within a bounded time: the first-boot callback registers the guest IP, the agent
	// answers, and the page says "live · agent" with CPU and memory figures.
	var callbackAt time.Time
	for callbackAt.IsZero() {
		if _, v := c.do("GET", "/v1/vms/"+id, ""); v["guest_ip"] != nil {
			callbackAt = time.Now()
			t.Logf("timing: %s boot → guest IP registered: %.0f s (%v, source %v)", variant, callbackAt.Sub(start).Seconds(), v["guest_ip"], v["guest_ip_source"])
			if v["guest_ip"] != guestIP {
				t.Errorf("the guest registered %v, it was given %s", v["guest_ip"], guestIP)
			}
			break
		}
		if time.Since(start) > bootBudget {
			pg.Fail("no guest IP registered within "+bootBudget.String(), nil)
		}
		time.Sleep(time.Second)
	}
	for {
		_, m := c.do("GET", "/v1/vms/"+id+"/metrics", "")
		if m["status"] == "live" && m["source"] == "agent" && m["cpu_usage_percent"] != nil {
			t.Logf("timing: %s guest IP registered → first agent sample: %.0f s (cpu %.1f %%, memory %.1f %%, agent %v)", variant,
				time.Since(callbackAt).Seconds(), m["cpu_usage_percent"], m["memory_usage_percent"], m["agent_version"])
			break
		}
		if time.Since(start) > bootBudget {
			pg.Fail(fmt.Sprintf("agent never live: %v", m), nil)
		}
		time.Sleep(time.Second)
	}
	// Both the agent (when it starts) and the first-boot callback (after it) register the
	// address, so the value's source is whichever came last; the callback's own entry must
	// be in the activity log.
	pg.WaitText("the callback's registration in the activity log", `[data-testid=audit-log]`, "("+"callback)", 2*time.Minute)
	pg.WaitText("the page shows live · agent", `[data-testid=metrics-badge]`, "live · agent", 30*time.Second)
	// The API has a CPU figure: the page has it by its next poll (every interval).
	var figs figures
	pg.WaitFor("the page's CPU figure, once the API has one", 30*time.Second, func() (bool, error) {
		figs = pageFigures(pg)
		_, err := percent(figs.CPU)
		return err == nil, nil
	})
	if _, err := percent(figs.Memory); err != nil {
		pg.Fail("memory figure on the page", err)
	}
	t.Logf("page: %q, CPU %s, memory %s", figs.Badge, figs.CPU, figs.Memory)
	// The guest's root filesystem, as its agent reports it, is a bar on the page.
	step("the root filesystem's bar", chromedp.WaitVisible(`[data-testid=filesystems] li[data-mount="/"]`))
	t.Logf("page: root filesystem %s %% used (warn %s)", pg.Eval("used", `document.querySelector('[data-testid=filesystems] li[data-mount="/"]').dataset.usedPercent`),
		pg.Eval("warn", `document.querySelector('[data-testid=filesystems] li[data-mount="/"]').dataset.warn`))
	browsertest.Screenshot(t, ctx, variant+"-live")

	// The console, as a person checks which machine this is: Enter in the page's terminal,
	// and the guest's getty answers with its name.
	pg.WaitText("the terminal is connected", `[data-testid=terminal-status]`, "connected", 30*time.Second)
	step("press Enter in the terminal", chromedp.Click(`#vm-terminal`), chromedp.KeyEvent("\r"))
	prompt := pg.WaitText("the guest's login prompt in the terminal", `#vm-terminal .xterm-rows`, "e2e-"+variant+" login:", time.Minute)
	t.Logf("console (%s): the login prompt names the guest %.1f s after Enter", variant, prompt.Seconds())
	browsertest.Screenshot(t, ctx, variant+"-console")

	_, vm = c.do("GET", "/v1/vms/"+id, "")
	guest := sshTo(t, data, guestIP, fmt.Sprint(vm["host_key"]))
	// Each boot is its own instance (cloud-init's instance id is the VM's id) on its own
	// overlay: the cached base image is never written.
	if got := strings.TrimSpace(guest.run("sudo cat /var/lib/cloud/data/instance-id")); got != id {
		t.Errorf("cloud-init instance id %q, want the VM id %s", got, id)
	}
	// The guest is named after the VM and resolves its own name (else sudo complains on
	// every call, as the output above would show).
	if got := strings.TrimSpace(guest.run("hostname; getent hosts $(hostname) >/dev/null || echo unresolved")); got != "e2e-"+variant {
		t.Errorf("guest hostname: %q, want e2e-%s resolving", got, variant)
	}
	if st, err := os.Stat(base); err != nil || st.ModTime().After(start) {
		t.Errorf("the base image was written while the guest ran: %v", err)
	}
	initName := strings.TrimSpace(guest.run("cat /proc/1/comm"))
	wantInit := map[string]string{"systemd": "systemd", "openrc": "init"}[variant]
	if initName != wantInit {
		t.Fatalf("the %s guest runs %q as pid 1", variant, initName)
	}

	if variant == "systemd" {
		storySnapshot(t, pg, c, id, guest)
	}

	// The stress script: CPU% into the 40–90 % band on the API and the page, disk writes
	// above zero; then stop it and watch CPU fall. The guest must be calm first, or a
	// figure from cloud-init's last minutes would count for the stress.
	calmBefore := waitCPU(t, pg, c, id, "calm before the stress", func(p float64) bool { return p < 30 }, 3*time.Minute)
	t.Logf("calm before the stress (%s): CPU %% %s", variant, fmtPcts(calmBefore.api))
	script, err := os.ReadFile("testdata/stress.sh")
	if err != nil {
		t.Fatal(err)
	}
	guest.upload("/tmp/hearth-stress.sh", script)
	guest.run("nohup sh /tmp/hearth-stress.sh </dev/null >/dev/null 2>&1 &")
	inBand := func(p float64) bool { return p >= 40 && p <= 90 }
	stress := waitCPU(t, pg, c, id, "CPU in the 40–90 % band under stress", inBand, 2*time.Minute)
	// The disk: writes show as a rate within a few samples.
	var disk []float64
	for len(disk) < 10 {
		_, m := c.do("GET", "/v1/vms/"+id+"/metrics", "")
		if w, ok := m["disk_write_bytes_per_second"].(float64); ok {
			disk = append(disk, w/(1<<20))
			if w >= 1<<20 {
				break
			}
		}
		time.Sleep(interval)
	}
	if disk[len(disk)-1] < 1 {
		t.Errorf("disk write rate under stress (MiB/s): %s, want at least 1", fmtPcts(disk))
	}
	f := pageFigures(pg)
	t.Logf("stress (%s): API CPU %% %s; page CPU %s; disk write MiB/s %s (page: %s)", variant, fmtPcts(stress.api), strings.Join(stress.page, ", "),
		fmtPcts(disk), f.DiskWrite)
	browsertest.Screenshot(t, ctx, variant+"-stress")
	// "[h]earth" so that the pattern does not match the shell that runs pkill (nor may
	// anything else on that command line).
	guest.run("pkill -f '[h]earth-stress'")
	guest.run("rm -f /var/tmp/hearth-stress.dat")
	calm := waitCPU(t, pg, c, id, "CPU falls after the stress", func(p float64) bool { return p < 30 }, 2*time.Minute)
	t.Logf("stress stopped (%s): API CPU %% %s; page CPU %s", variant, fmtPcts(calm.api), strings.Join(calm.page, ", "))

	// Stop the agent in the guest with its init system: the badge turns to host fallback
	// within two intervals. Then one click on "Install agent" brings it back.
	stopAgent := map[string]string{"systemd": "sudo systemctl stop hearth-agent", "openrc": "sudo rc-service hearth-agent stop"}[variant]
	guest.run(stopAgent)
	// "Within two intervals" is counted in the collector's rounds (its Prometheus
	// counter), not in seconds a loaded machine stretches: the badge must have turned once
	// two whole rounds have finished after the stop (the round under way may have polled
	// before it).
	stopped, roundsAt := time.Now(), c.rounds()
	for {
		_, m := c.do("GET", "/v1/vms/"+id+"/metrics", "")
		done := c.rounds() - roundsAt // read after the badge: see withinIntervals in app/cmd/hearth
		if m["status"] == "host" {
			t.Logf("agent stopped (%s) → API badge host fallback: %.1f s, %d polling rounds (interval %s; why: %v)",
				variant, time.Since(stopped).Seconds(), done, interval, m["why"])
			break
		}
		if done > 3 {
			t.Fatalf("still %v after two whole polling rounds since the agent stopped", m["status"])
		}
		if time.Since(stopped) > 2*time.Minute {
			t.Fatalf("still %v 2 minutes after the agent stopped (%d rounds)", m["status"], done)
		}
		time.Sleep(200 * time.Millisecond)
	}
	pg.WaitText("the page shows host fallback", `[data-testid=metrics-badge]`, "host fallback", 30*time.Second) // its next 5 s poll, on a loaded machine
	browsertest.Screenshot(t, ctx, variant+"-host-fallback")
	installAt := time.Now()
	step("install agent", chromedp.Click(`[data-testid=install-agent]`), chromedp.WaitVisible(`[data-testid=install-steps]`))
	pg.WaitFor("install progress reaches done", 4*time.Minute, func() (bool, error) {
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#agent-install')?.dataset.state || ''`))
		if s == "failed" {
			pg.Fail("install failed: "+pg.Text("install panel", `#agent-install`), nil)
		}
		return s == "done", err
	})
	steps := pg.Eval("steps", `[...document.querySelectorAll('[data-step]')].map(e => e.dataset.step + '=' + e.dataset.stepState).join(' ')`)
	if strings.Count(steps, "=done") != strings.Count(steps, "=") || steps == "" {
		t.Errorf("install steps on the page: %s", steps)
	}
	t.Logf("timing: %s one-click agent install: %.0f s (%s)", variant, time.Since(installAt).Seconds(), steps)
	pg.WaitText("the agent is back on the page", `[data-testid=metrics-badge]`, "live · agent", time.Minute)
	browsertest.Screenshot(t, ctx, variant+"-reinstalled")

	// Override the guest IP in the form with an address where no agent answers: it shows
	// as manual and the collector follows it (the agent is missed at that address). Clear
	// it: the guest's registration takes over and the agent is live again.
	elsewhere := guestIP[:strings.LastIndex(guestIP, ".")] + ".99" // on the bridge, where no agent answers
	step("override the guest IP",
		chromedp.SetValue(`#f-guest_ip`, elsewhere),
		chromedp.Click(`[data-testid=guest-ip-save]`),
		chromedp.WaitVisible(`[data-guest-ip="`+elsewhere+`"]`),
	)
	pg.WaitText("override shows as manual", `[data-testid=guest-ip-value]`, "manual", 10*time.Second)
	pg.WaitText("the page says who registered underneath", `[data-testid=guest-ip-registered]`, guestIP, 10*time.Second)
	overrideAt := time.Now()
	for {
		_, m := c.do("GET", "/v1/vms/"+id+"/metrics", "")
		if m["status"] == "host" && strings.Contains(fmt.Sprint(m["why"]), elsewhere+":8080") {
			t.Logf("override to %s → polling follows it: %.1f s (why: %v)", elsewhere, time.Since(overrideAt).Seconds(), m["why"])
			break
		}
		if time.Since(overrideAt) > 30*time.Second {
			t.Fatalf("polling did not follow the override: %v", m)
		}
		time.Sleep(250 * time.Millisecond)
	}
	pg.WaitText("the page shows the agent missing at the override", `#vm-metrics`, elsewhere, 15*time.Second)
	browsertest.Screenshot(t, ctx, variant+"-override")
	step("clear the override", chromedp.Click(`[data-testid=guest-ip-clear]`), chromedp.WaitVisible(`[data-guest-ip="`+guestIP+`"]`))
	if src := pg.Text("source after clearing", `[data-testid=guest-ip-value]`); strings.Contains(src, "manual") {
		t.Errorf("after clearing the override the value still says manual: %q", src)
	}
	pg.WaitText("the agent is live again at the registered address", `[data-testid=metrics-badge]`, "live · agent", 30*time.Second)

	// Stop and delete in the UI: nothing of the VM may be left.
	pg.ClickButton("stop", `[data-testid=vm-stop]`)
	took := pg.WaitText("stopped", `#vm-status [data-state]`, "stopped", 3*time.Minute)
	_, vm = c.do("GET", "/v1/vms/"+id, "")
	t.Logf("timing: %s graceful stop: %.0f s", variant, took.Seconds())
	if r, _ := vm["state_reason"].(string); r != "" {
		t.Errorf("the stop was not graceful: %s", r)
	}

	// Rename the stopped VM in its edit form, make it the default size (1 vCPU) and boot it
	// again: its seed was rendered again as a new cloud-init instance, so the guest takes
	// the new name, and its agent comes back with the seed's new registration token.
	renamed := "e2e-" + variant + "-renamed"
	step("rename and 1 vCPU",
		chromedp.Click(`a[href$="/edit"]`),
		chromedp.WaitVisible(`#f-name`),
		chromedp.SetValue(`#f-name`, renamed),
		chromedp.SetValue(`#f-vcpus`, "1"),
		chromedp.Click(`[data-testid=vm-submit]`),
		chromedp.WaitVisible(`[data-testid=vm-start]`),
	)
	if got := pg.Text("name after the rename", `[data-testid=vm-name]`); got != renamed {
		t.Errorf("the page names the VM %q after the rename", got)
	}
	restart := time.Now()
	pg.ClickButton("start again", `[data-testid=vm-start]`)
	step("running again", chromedp.WaitVisible(`#vm-status[data-state=running]`))
	// A new run shows none of the last run's numbers, however recent.
	if _, m := c.do("GET", "/v1/vms/"+id+"/metrics", ""); m["time"] != nil {
		if at, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(m["time"])); at.Before(restart) {
			t.Errorf("right after the restart the API shows the last run's sample: %v", m)
		}
	}
	for {
		_, v := c.do("GET", "/v1/vms/"+id, "")
		at, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(v["guest_ip_updated_at"]))
		_, m := c.do("GET", "/v1/vms/"+id+"/metrics", "")
		if at.After(restart) && m["status"] == "live" && m["source"] == "agent" {
			t.Logf("timing: %s start after the rename → registered again and agent live: %.0f s (source %v)", variant, time.Since(restart).Seconds(), v["guest_ip_source"])
			break
		}
		if time.Since(restart) > bootBudget {
			pg.Fail(fmt.Sprintf("after the rename the guest did not register again with a live agent: %v %v", v, m), nil)
		}
		time.Sleep(time.Second)
	}
	if got := strings.TrimSpace(guest.run("hostname; getent hosts $(hostname) >/dev/null || echo unresolved")); got != renamed {
		t.Errorf("guest hostname after the rename: %q, want %s resolving", got, renamed)
	}
	if got := strings.TrimSpace(guest.run("sudo cat /var/lib/cloud/data/instance-id")); got != id+"-r1" {
		t.Errorf("cloud-init instance id after the rename %q, want %s-r1", got, id)
	}
	pg.WaitText("the page shows live · agent after the rename", `[data-testid=metrics-badge]`, "live · agent", 30*time.Second)
	storyStress(t, pg, c, id, guest, variant)
	pg.ClickButton("stop again", `[data-testid=vm-stop]`)
	took = pg.WaitText("stopped again", `#vm-status [data-state]`, "stopped", 3*time.Minute)
	t.Logf("timing: %s graceful stop after the rename: %.0f s", variant, took.Seconds())
	// Deleting removes the console log with the VM's files: keep it first.
	if b, err := os.ReadFile(console); err == nil {
		os.WriteFile(filepath.Join(art, "console.log"), b, 0o644)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector('form[action$="/delete"]').submit(), true`)); err != nil {
		pg.Fail("delete", err)
	}
	step("back on the list", chromedp.WaitVisible(`[data-testid=new-vm]`))
	if out, err := exec.Command("pgrep", "-f", "hearth-"+id).Output(); err == nil {
		t.Errorf("hypervisor processes left: %s", out)
	}
	if _, err := netlink.LinkByName(hostnet.TapName(id)); err == nil {
		t.Errorf("tap %s left", hostnet.TapName(id))
	}
	filepath.Walk(data, func(p string, info os.FileInfo, err error) error {
		if err == nil && strings.Contains(p, id) {
			t.Errorf("file left: %s", p)
		}
		return nil
	})
	t.Logf("timing: %s whole scenario: %.0f s", variant, time.Since(scenarioStart).Seconds())
}

// storyStress runs the stress loop of the story this product comes from (testdata/story.sh)
// on the 1-vCPU guest and requires what the story promises, as Hearth reports it on the API
// and the page: CPU in 40–90 %, programs writing at least 5 MiB/s, network in and out, and
// all of it falling back once the loop is stopped.
// storySnapshot: a snapshot of the registered, live guest from its page; a file written
// after it; a restore from the page (confirmed): the guest is the snapshot's (the file
// from before is there, the one from after is not, its uptime continues from the
// snapshot's), its clock is stepped to the host's, and the page is live again.
func storySnapshot(t *testing.T, pg browsertest.Page, c client, id string, guest guestShell) {
	t.Helper()
	uptimeAt := func() float64 {
		var u float64
		fmt.Sscan(guest.run("cut -d' ' -f1 /proc/uptime"), &u)
		return u
	}
	guest.run("echo before | sudo tee /var/tmp/hearth-snap-before >/dev/null && sync")
	// The guest's uptime just before the snapshot: the snapshot's is a little more.
	beforeSnap := uptimeAt()
	pg.Step("name the snapshot", chromedp.SetValue(`[data-testid=snapshot-name]`, "e2e"))
	took := time.Now()
	pg.ClickButton("take a snapshot", `[data-testid=snapshot-take]`)
	pg.WaitFor("the snapshot is ready", 5*time.Minute, func() (bool, error) {
		return pg.Eval("snapshot row", `document.querySelector('[data-snapshot="e2e"]')?.dataset.state || ''`) == "ready", nil
	})
	_, snap := c.do("GET", "/v1/vms/"+id+"/snapshots/e2e", "")
	size, _ := snap["size_bytes"].(float64)
	atSnap := uptimeAt() // just after: a little more than the snapshot's
	t.Logf("snapshot (systemd guest, %v MiB): %.1f s to ready on the page, guest paused %v ms, %.1f MiB", snap["memory_mib"],
		time.Since(took).Seconds(), snap["paused_ms"], size/(1<<20))
	guest.run("echo after | sudo tee /var/tmp/hearth-snap-after >/dev/null && sync")
	time.Sleep(10 * time.Second) // the host's clock moves on; the snapshot's guest's does not

	pg.Eval("answer the confirm", `window.confirm = () => true, ""`)
	restoreAt := time.Now()
	pg.ClickButton("restore", `[data-testid=snapshot-restore-e2e]`)
	var running time.Duration
	pid := func() string {
		_, v := c.do("GET", "/v1/vms/"+id, "")
		return fmt.Sprint(v["state"], " ", v["updated_at"])
	}
	before := pid() // "running <updated_at>": the restore makes a new run
	for {
		if now := pid(); running == 0 && now != before && strings.HasPrefix(now, "running ") {
			running = time.Since(restoreAt)
		}
		if _, m := c.do("GET", "/v1/vms/"+id+"/metrics", ""); running > 0 && m["status"] == "live" && m["source"] == "agent" {
			break
		}
		if time.Since(restoreAt) > 3*time.Minute {
			pg.Fail("not live again after the restore: "+pid(), nil)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("restore (systemd guest): running %.1f s after the click, live agent numbers %.1f s after it", running.Seconds(), time.Since(restoreAt).Seconds())
	pg.WaitText("the page is live again", `[data-testid=metrics-badge]`, "live · agent", 30*time.Second)
	out := guest.run("ls /var/tmp/hearth-snap-before /var/tmp/hearth-snap-after 2>&1; date +%s")
	if !strings.Contains(out, "\n/var/tmp/hearth-snap-before") && !strings.HasPrefix(out, "/var/tmp/hearth-snap-before") ||
		!strings.Contains(out, "access '/var/tmp/hearth-snap-after': No such file") {
		t.Errorf("after the restore: want the file from before the snapshot and not the one from after:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var guestNow int64
	fmt.Sscan(lines[len(lines)-1], &guestNow)
	if off := time.Since(time.Unix(guestNow, 0)); off.Abs() > 5*time.Second {
		t.Errorf("the guest's clock is %.0f s off the host's after the restore", off.Seconds())
	}
	after := uptimeAt()
	wall := time.Since(took).Seconds()
	t.Logf("guest uptime: %.1f s before the snapshot, %.1f s after it, %.1f s after the restore (%.0f s of wall clock later)", beforeSnap, atSnap, after, wall)
	// Continued from the snapshot's: not a new boot (less than before it), and without the
	// 10 s and more the world spent after it (the clock stood still in the snapshot).
	if after < beforeSnap || after > beforeSnap+wall-8 {
		t.Errorf("the guest's uptime after the restore (%.1f s) does not continue from the snapshot's (%.1f–%.1f s)", after, beforeSnap, atSnap)
	}
	pg.WaitText("the activity list tells the clock step", `[data-testid=audit-log]`, "guest clock stepped forward", 30*time.Second)
	if status, _ := c.do("DELETE", "/v1/vms/"+id+"/snapshots/e2e", ""); status != 204 {
		t.Errorf("delete the snapshot: %d", status)
	}
}

func storyStress(t *testing.T, pg browsertest.Page, c client, id string, guest guestShell, variant string) {
	t.Helper()
	if n := strings.TrimSpace(guest.run("nproc")); n != "1" {
		t.Fatalf("the renamed guest has %s vCPUs, want 1", n)
	}
	calm := waitCPU(t, pg, c, id, "calm before the story's loop", func(p float64) bool { return p < 30 }, 3*time.Minute)
	quiet := apiRates(c, id, 4)
	t.Logf("story (%s), before: CPU %% %s; %s", variant, fmtPcts(calm.api), quiet)
	managerURL := strings.TrimSpace(guest.run(`sudo sh -c '. /etc/hearth-agent.conf; echo "$HEARTH_MANAGER_URL"'`))
	script, err := os.ReadFile("testdata/story.sh")
	if err != nil {
		t.Fatal(err)
	}
	guest.upload("/tmp/hearth-story.sh", script)
	guest.run("nohup sh /tmp/hearth-story.sh " + managerURL + "/healthz </dev/null >/dev/null 2>&1 &")
	inBand := func(p float64) bool { return p >= 40 && p <= 90 }
	busy := waitCPU(t, pg, c, id, "the story's loop: CPU in the 40–90 % band on 1 vCPU", inBand, 3*time.Minute)
	loaded := apiRates(c, id, 6)
	if loaded.maxProg < 5 {
		t.Errorf("programs' write rate under the story's loop: %s; want at least 5 MiB/s", loaded)
	}
	if loaded.rx <= 0 || loaded.tx <= 0 {
		t.Errorf("network under the story's loop: %s; want in and out above 0 B/s", loaded)
	}
	var page string
	pg.WaitFor("the page shows programs writing at least 5 MiB/s", 30*time.Second, func() (bool, error) {
		page = pg.Eval("programs' write figure", `document.querySelector('[data-stat="Disk write"] [data-figure=second]')?.innerText.trim() || ''`)
		r, err := rateOf(strings.TrimSuffix(page, " by programs"))
		return err == nil && r >= 5<<20, nil
	})
	f := pageFigures(pg)
	t.Logf("story (%s), under the loop: API CPU %% %s; %s; page CPU %s, disk write %s · %s", variant, fmtPcts(busy.api), loaded,
		strings.Join(busy.page, ", "), f.DiskWrite, page)
	browsertest.Screenshot(t, pg.Ctx, variant+"-story")

	guest.run("pkill -f '[h]earth-story'; pkill -x yes; true")
	after := waitCPU(t, pg, c, id, "CPU falls after the story's loop", func(p float64) bool { return p < 30 }, 2*time.Minute)
	var fell rates
	for start := time.Now(); ; {
		fell = apiRates(c, id, 4)
		if fell.maxProg < 1 && fell.rx < loaded.rx && fell.tx < loaded.tx {
			break
		}
		if time.Since(start) > time.Minute {
			t.Errorf("after the story's loop: %s; under it: %s; want programs' writes below 1 MiB/s and less network", fell, loaded)
			break
		}
	}
	t.Logf("story (%s), stopped: API CPU %% %s; %s", variant, fmtPcts(after.api), fell)
}

// rates are the means (and the largest programs' write rate) of a few API samples.
type rates struct{ prog, maxProg, rx, tx float64 }

func (r rates) String() string {
	return fmt.Sprintf("programs write %.1f MiB/s (max %.1f), net in %.0f B/s, out %.0f B/s", r.prog, r.maxProg, r.rx, r.tx)
}

// apiRates reads n distinct samples of the VM's metrics, one per interval.
func apiRates(c client, id string, n int) rates {
	var r rates
	var last string
	for got := 0; got < n; {
		_, m := c.do("GET", "/v1/vms/"+id+"/metrics", "")
		if at := fmt.Sprint(m["time"]); at != last && m["source"] == "agent" {
			last = at
			got++
			num := func(k string) float64 { v, _ := m[k].(float64); return v }
			p := num("disk_write_by_programs_bytes_per_second") / (1 << 20)
			r.prog += p / float64(n)
			r.maxProg = max(r.maxProg, p)
			r.rx += num("net_rx_bytes_per_second") / float64(n)
			r.tx += num("net_tx_bytes_per_second") / float64(n)
		}
		time.Sleep(interval)
	}
	return r
}

// rateOf parses a figure like "21.3 MiB/s" into bytes per second.
func rateOf(s string) (float64, error) {
	num, unit, _ := strings.Cut(strings.TrimSpace(s), " ")
	v, err := strconv.ParseFloat(num, 64)
	mult := map[string]float64{"B/s": 1, "KiB/s": 1 << 10, "MiB/s": 1 << 20, "GiB/s": 1 << 30}[unit]
	if err != nil || mult == 0 {
		return 0, fmt.Errorf("%q is not a rate", s)
	}
	return v * mult, nil
}

// cpuSeen is the CPU% figures a wait saw, each time it changed: on the API and the page.
type cpuSeen struct {
	api  []float64
	page []string
}

// waitCPU waits until two successive figures of the agent on the API and the figure on the
// page all satisfy ok, and returns what it saw on the way. The agent computes CPU% on its
// own interval and the manager polls more often, so a repeated value is one figure.
func waitCPU(t *testing.T, pg browsertest.Page, c client, id, what string, ok func(float64) bool, within time.Duration) cpuSeen {
	t.Helper()
	var seen cpuSeen
	apiOK, pageOK := false, false
	start := time.Now()
	for !(apiOK && pageOK) {
		_, m := c.do("GET", "/v1/vms/"+id+"/metrics", "")
		p, isNum := m["cpu_usage_percent"].(float64)
		if isNum && m["source"] == "agent" && (len(seen.api) == 0 || seen.api[len(seen.api)-1] != p) {
			seen.api = append(seen.api, p)
			n := len(seen.api)
			apiOK = n >= 2 && ok(seen.api[n-1]) && ok(seen.api[n-2])
		}
		fig := pageFigures(pg).CPU
		if v, err := percent(fig); err == nil {
			if len(seen.page) == 0 || seen.page[len(seen.page)-1] != fig {
				seen.page = append(seen.page, fig)
			}
			pageOK = pageOK || ok(v)
		}
		if time.Since(start) > within {
			pg.Fail(fmt.Sprintf("%s: API CPU %% %s, page CPU %v", what, fmtPcts(seen.api), seen.page), nil)
		}
		time.Sleep(interval / 2)
	}
	return seen
}

// figures is what the VM page's metrics panel shows.
type figures struct{ Badge, CPU, Memory, DiskWrite string }

func pageFigures(pg browsertest.Page) figures {
	js := `JSON.stringify({
		Badge: document.querySelector('[data-testid=metrics-badge]')?.innerText.trim() || '',
		CPU: document.querySelector('[data-stat="CPU"] dd')?.innerText.trim() || '',
		Memory: document.querySelector('[data-stat="Memory"] dd')?.innerText.trim() || '',
		DiskWrite: document.querySelector('[data-stat="Disk write"] dd')?.innerText.trim() || '',
	})`
	var f figures
	json.Unmarshal([]byte(pg.Eval("read the metrics panel", js)), &f)
	return f
}

// percent parses a figure like "52.3 %".
func percent(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(s, "%")), 64)
	if err != nil || v < 0 || v > 100 {
		return 0, fmt.Errorf("%q is not a percentage", s)
	}
	return v, nil
}

func fmtPcts(ps []float64) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.FormatFloat(p, 'f', 1, 64)
	}
	return strings.Join(s, " ")
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
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

// rounds is the manager's count of finished polling rounds (hearth_collector_rounds_total).
func (c client) rounds() uint64 {
	c.t.Helper()
	req, _ := http.NewRequest("GET", c.base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "hearth_collector_rounds_total "); ok {
			if n, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				return uint64(n)
			}
		}
	}
	c.t.Fatalf("no hearth_collector_rounds_total in the manager's /metrics (%s)", resp.Status)
	return 0
}

// guestShell runs commands in the guest as user hearth with the manager's own key,
// accepting only the host key Hearth injected through the seed.
type guestShell struct {
	t   *testing.T
	cfg *ssh.ClientConfig
	at  string
}

func sshTo(t *testing.T, dataDir, ip, hostKey string) guestShell {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(dataDir, "ssh", "hearth_ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	want, _, _, _, err := ssh.ParseAuthorizedKey([]byte(hostKey))
	if err != nil {
		t.Fatalf("recorded host key %q: %v", hostKey, err)
	}
	return guestShell{t: t, at: net.JoinHostPort(ip, "22"), cfg: &ssh.ClientConfig{User: "hearth", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(want), HostKeyAlgorithms: []string{want.Type()}, Timeout: 15 * time.Second}}
}

func (g guestShell) session(cmd string, stdin []byte) (string, error) {
	client, err := ssh.Dial("tcp", g.at, g.cfg)
	if err != nil {
		return "", err
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		return "", err
	}
	defer sess.Close()
	if stdin != nil {
		sess.Stdin = bytes.NewReader(stdin)
	}
	out, err := sess.CombinedOutput(cmd)
	return string(out), err
}

func (g guestShell) run(cmd string) string {
	g.t.Helper()
	out, err := g.session(cmd, nil)
	if err != nil {
		g.t.Fatalf("in the guest, %q: %v: %s", cmd, err, out)
	}
	return out
}

func (g guestShell) upload(path string, b []byte) {
	g.t.Helper()
	if out, err := g.session("cat > "+path, b); err != nil {
		g.t.Fatalf("upload %s to the guest: %v: %s", path, err, out)
	}
}
