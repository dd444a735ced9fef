package firecracker

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"go.yaml.in/yaml/v4"
)

// Firecracker cannot run here (it needs /dev/kvm), so the driver is tested against a fake:
// this test binary, re-executed with HEARTH_FAKE_FIRECRACKER set, serves the API socket and
// checks every request against Firecracker's own swagger spec. Each deviation is written
// to the file HEARTH_FAKE_FC_VIOLATIONS names and answered 400 with a fault_message, as
// Firecracker would; the tests fail on any line in that file.
func TestMain(m *testing.M) {
	if os.Getenv("HEARTH_FAKE_FIRECRACKER") != "" {
		os.Exit(fakeFirecracker(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// specRouter loads testdata/firecracker-swagger.yaml (Swagger 2.0), converts it to
// OpenAPI 3 and returns a router for request validation.
func specRouter() (routers.Router, error) {
	b, err := os.ReadFile("testdata/firecracker-swagger.yaml")
	if err != nil {
		return nil, err
	}
	var generic any
	if err := yaml.Unmarshal(b, &generic); err != nil {
		return nil, err
	}
	js, err := json.Marshal(stringKeys(generic))
	if err != nil {
		return nil, err
	}
	var doc2 openapi2.T
	if err := json.Unmarshal(js, &doc2); err != nil {
		return nil, err
	}
	doc3, err := openapi2conv.ToV3(&doc2)
	if err != nil {
		return nil, err
	}
	doc3.Servers = nil // match any host: requests arrive as http://localhost/...
	if err := doc3.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	return gorillamux.NewRouter(doc3)
}

// stringKeys turns YAML's map[any]any (response codes are integer keys) into JSON objects.
func stringKeys(v any) any {
	switch x := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, val := range x {
			m[fmt.Sprint(k)] = stringKeys(val)
		}
		return m
	case map[string]any:
		for k, val := range x {
			x[k] = stringKeys(val)
		}
		return x
	case []any:
		for i := range x {
			x[i] = stringKeys(x[i])
		}
	}
	return v
}

// fakeState is what the fake remembers between requests.
type fakeState struct {
	mu          sync.Mutex
	metricsPath string
	started     bool
	calls       []string
	// Snapshots, as Firecracker has them (refused with its fault_message otherwise, which
	// is not a spec violation): a paused VM only; a diff only with dirty-page
	// tracking; a load only on a fresh process. The guest's memory is four pages of text
	// (the rest zero): page i reads "page <i> gen <n>"; each resume dirties page 1.
	paused     bool
	tracking   bool
	configured bool // anything but the logger and metrics was configured
	memMiB     int
	pages      [4]string
	dirty      map[int]bool
}

const fakePage = 4096

// writeMemory writes the fake guest's memory to path: every page, or only the dirty ones
// into a sparse file of the memory's size (as a Diff snapshot does).
func (st *fakeState) writeMemory(path string, diff bool) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(int64(max(st.memMiB, 1)) << 20); err != nil {
		return err
	}
	for i, p := range st.pages {
		if diff && !st.dirty[i] {
			continue
		}
		if _, err := f.WriteAt([]byte(p), int64(i)*fakePage); err != nil {
			return err
		}
	}
	st.dirty = map[int]bool{}
	return nil
}

// readMemory loads the pages from a memory file; a page that reads empty means the file is
// not a whole memory (a diff never laid over its base).
func (st *fakeState) readMemory(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for i := range st.pages {
		b := make([]byte, 64)
		f.ReadAt(b, int64(i)*fakePage)
		s := strings.TrimRight(string(b), "\x00")
		if !strings.HasPrefix(s, fmt.Sprintf("page %d gen ", i)) {
			return fmt.Errorf("page %d of the memory file is %q: not a whole memory", i, s)
		}
		st.pages[i] = s
	}
	return nil
}

func fakeFirecracker(args []string) int {
	violations, _ := os.OpenFile(os.Getenv("HEARTH_FAKE_FC_VIOLATIONS"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	defer violations.Close()
	var sock, chroot, execFile, id, base string
	uid, gid := -1, -1
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "--api-sock":
			sock = args[i+1]
		case "--exec-file":
			execFile = args[i+1]
		case "--id":
			id = args[i+1]
		case "--chroot-base-dir":
			base = args[i+1]
		case "--uid":
			fmt.Sscan(args[i+1], &uid)
		case "--gid":
			fmt.Sscan(args[i+1], &gid)
		}
	}
	if execFile != "" {
		// As the jailer: the chroot is <base>/<exec file name>/<id>/root, and firecracker's
		// paths (the socket too) are inside it, open to the jail's uid/gid: the fake runs
		// as root, so it checks the permissions the real one would meet.
		chroot = filepath.Join(base, filepath.Base(execFile), id, "root")
		if !jailCan(filepath.Join(chroot, filepath.Dir(sock)), uid, gid, true) {
			fmt.Fprintf(violations, "jail: %d:%d cannot create its socket in %s\n", uid, gid, filepath.Dir(sock))
		}
		sock = filepath.Join(chroot, sock)
	}
	inJail := func(p string, write bool) string {
		if chroot == "" {
			return p
		}
		if _, err := os.Stat(filepath.Join(chroot, p)); err != nil {
			fmt.Fprintf(violations, "jail: %s is not inside the chroot\n", p)
		} else if !jailCan(filepath.Join(chroot, p), uid, gid, write) {
			fmt.Fprintf(violations, "jail: %d:%d cannot open %s (write: %v)\n", uid, gid, p, write)
		}
		return filepath.Join(chroot, p)
	}
	router, err := specRouter()
	if err != nil {
		fmt.Fprintln(violations, "fake: cannot load spec:", err)
		return 3
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		fmt.Fprintln(violations, "fake: listen:", err)
		return 3
	}
	fmt.Println("fake firecracker: console line from the guest") // stdout is the serial console
	go func() {                                                  // the guest's side of the serial port: it answers every line typed
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			fmt.Printf("guest read: %s\n", sc.Text())
		}
	}()
	st := &fakeState{dirty: map[int]bool{}}
	for i := range st.pages {
		st.pages[i] = fmt.Sprintf("page %d gen 0", i)
		st.dirty[i] = true
	}
	exit := make(chan int, 1)
	fault := func(w http.ResponseWriter, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"fault_message": msg})
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		route, params, err := router.FindRoute(r)
		if err == nil {
			err = openapi3filter.ValidateRequest(r.Context(), &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route})
		}
		if err != nil {
			fmt.Fprintf(violations, "%s %s %s: %v\n", r.Method, r.URL.Path, body, err)
			fault(w, "request does not match the API spec: "+err.Error())
			return
		}
		st.mu.Lock()
		defer st.mu.Unlock()
		st.calls = append(st.calls, r.Method+" "+r.URL.Path)
		var b map[string]any
		json.Unmarshal(body, &b)
		for _, k := range []string{"kernel_image_path", "initrd_path", "path_on_host", "metrics_path", "log_path"} {
			if v, ok := b[k].(string); ok && v != "" && chroot != "" {
				write := k == "metrics_path" || k == "log_path" || (k == "path_on_host" && b["is_read_only"] != true)
				inJail(v, write)
			}
		}
		if r.URL.Path != "/logger" && r.URL.Path != "/metrics" && r.URL.Path != "/snapshot/load" && r.Method == http.MethodPut {
			st.configured = true
		}
		switch {
		case r.URL.Path == "/machine-config":
			st.tracking = b["track_dirty_pages"] == true
			if n, ok := b["mem_size_mib"].(float64); ok {
				st.memMiB = int(n)
			}
		case r.URL.Path == "/vm":
			if !st.started {
				fault(w, "The requested operation is not supported before starting the microVM.")
				return
			}
			st.paused = b["state"] == "Paused"
			if !st.paused { // the guest runs and writes: page 1 changes
				gen := 0
				fmt.Sscanf(st.pages[1], "page 1 gen %d", &gen)
				st.pages[1], st.dirty[1] = fmt.Sprintf("page 1 gen %d", gen+1), true
			}
		case r.URL.Path == "/snapshot/create":
			if !st.paused {
				fault(w, "Cannot create a snapshot of a running microVM: pause it first.")
				return
			}
			diff := b["snapshot_type"] == "Diff"
			if diff && !st.tracking {
				fault(w, "Diff snapshots are not allowed on uVMs with dirty page tracking disabled.")
				return
			}
			statePath, memPath := b["snapshot_path"].(string), b["mem_file_path"].(string)
			if chroot != "" { // firecracker creates them: their directories must be the jail's
				for _, p := range []string{statePath, memPath} {
					if !jailCan(filepath.Join(chroot, filepath.Dir(p)), uid, gid, true) {
						fmt.Fprintf(violations, "jail: %d:%d cannot create %s\n", uid, gid, p)
					}
				}
				statePath, memPath = filepath.Join(chroot, statePath), filepath.Join(chroot, memPath)
			}
			if err := os.WriteFile(statePath, []byte("fake vmstate of "+id), 0o600); err != nil {
				fault(w, "Cannot save the microVM state: "+err.Error())
				return
			}
			if err := st.writeMemory(memPath, diff); err != nil {
				fault(w, "Cannot save the guest memory: "+err.Error())
				return
			}
		case r.URL.Path == "/snapshot/load":
			if st.configured || st.started {
				fault(w, "Loading a microVM snapshot not allowed after configuring boot-specific resources.")
				return
			}
			mb, _ := b["mem_backend"].(map[string]any)
			memPath, _ := mb["backend_path"].(string)
			statePath := inJail(b["snapshot_path"].(string), false)
			memPath = inJail(memPath, false)
			if _, err := os.Stat(statePath); err != nil {
				fault(w, "Cannot load the microVM state: "+err.Error())
				return
			}
			if err := st.readMemory(memPath); err != nil {
				fault(w, "Cannot load the guest memory: "+err.Error())
				return
			}
			st.tracking = b["track_dirty_pages"] == true
			st.started, st.paused = b["resume_vm"] == true, b["resume_vm"] != true
			fmt.Printf("fake firecracker: restored, %s\n", strings.Join(st.pages[:], "; "))
		case strings.HasPrefix(r.URL.Path, "/drives/") && b["is_root_device"] == true && !strings.HasSuffix(fmt.Sprint(b["path_on_host"]), "/rootfs.img"):
			fmt.Fprintf(violations, "root drive %v is not the VM's private copy\n", b["path_on_host"])
		case r.URL.Path == "/metrics":
			st.metricsPath, _ = b["metrics_path"].(string)
		case r.URL.Path == "/boot-source" && strings.Contains(fmt.Sprint(b["kernel_image_path"]), "missing"):
			// As Firecracker does for a kernel it cannot open.
			fault(w, "Invalid kernel path: No such file or directory (os error 2)")
			return
		case r.URL.Path == "/actions":
			switch b["action_type"] {
			case "InstanceStart":
				st.started = true
			case "FlushMetrics":
				f, err := os.OpenFile(inJail(st.metricsPath, true), os.O_WRONLY, 0)
				if err == nil {
					fmt.Fprintln(f, `{"utc_timestamp_ms":1,"block":{"read_bytes":4096,"write_bytes":512,"read_count":1,"write_count":1},"net":{"rx_bytes_count":100,"tx_bytes_count":40,"rx_packets_count":2,"tx_packets_count":1}}`)
					f.Close()
				}
			case "SendCtrlAltDel":
				if os.Getenv("HEARTH_FAKE_FC_IGNORE_CAD") == "" {
					defer func() { exit <- 0 }()
				}
			}
		case r.Method == http.MethodGet && r.URL.Path == "/":
			w.Header().Set("Content-Type", "application/json")
			state := "Not started"
			if st.started {
				state = "Running"
			}
			json.NewEncoder(w).Encode(map[string]string{"id": "fake", "state": state, "vmm_version": "1.16.1", "app_name": "Firecracker"})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})}
	go srv.Serve(l)
	code := <-exit
	l.Close()
	return code
}

// jailCan reports whether uid/gid may open p for reading (or writing), by its permission
// bits, as the jailed firecracker would be allowed to.
func jailCan(p string, uid, gid int, write bool) bool {
	st, err := os.Stat(p)
	if err != nil {
		return false
	}
	sys := st.Sys().(*syscall.Stat_t)
	perm := st.Mode().Perm()
	want := os.FileMode(0o4)
	if write {
		want = 0o2
	}
	if st.IsDir() {
		want |= 0o1
	}
	switch {
	case int(sys.Uid) == uid:
		return perm>>6&want == want
	case int(sys.Gid) == gid:
		return perm>>3&want == want
	}
	return perm&want == want
}
