// Package firecracker runs VMs with Firecracker: it starts `firecracker --api-sock` (or
// through jailer) and configures the VM over a small hand-written client of the API on the
// unix socket, checked against the upstream swagger spec in tests.
package firecracker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Client speaks Firecracker's API over its unix socket.
type Client struct {
	http *http.Client
}

// NewClient returns a client of the API socket at path.
func NewClient(socket string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	return &Client{http: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// APIError is an error answer from Firecracker; FaultMessage is its own explanation, which
// reaches the operator as is.
type APIError struct {
	Op           string
	Status       int
	FaultMessage string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("firecracker %s: %s (HTTP %d)", e.Op, e.FaultMessage, e.Status)
}

func (c *Client) do(ctx context.Context, method, path string, body any, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://localhost"+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("firecracker %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		var fault struct {
			FaultMessage string `json:"fault_message"`
		}
		if json.Unmarshal(b, &fault) != nil || fault.FaultMessage == "" {
			fault.FaultMessage = string(bytes.TrimSpace(b))
		}
		return &APIError{Op: method + " " + path, Status: resp.StatusCode, FaultMessage: fault.FaultMessage}
	}
	if out != nil && len(b) > 0 {
		return json.Unmarshal(b, out)
	}
	return nil
}

// The request bodies, named as in the swagger definitions.
type (
	Logger struct {
		LogPath       string `json:"log_path"`
		Level         string `json:"level,omitempty"`
		ShowLevel     bool   `json:"show_level"`
		ShowLogOrigin bool   `json:"show_log_origin"`
	}
	Metrics struct {
		MetricsPath string `json:"metrics_path"`
	}
	MachineConfig struct {
		VCPUCount       int  `json:"vcpu_count"`
		MemSizeMiB      int  `json:"mem_size_mib"`
		SMT             bool `json:"smt"`
		TrackDirtyPages bool `json:"track_dirty_pages"`
	}
	// VM is PATCH /vm: "Paused" or "Resumed".
	VM struct {
		State string `json:"state"`
	}
	SnapshotCreateParams struct {
		SnapshotType string `json:"snapshot_type,omitempty"` // "Full" or "Diff"
		SnapshotPath string `json:"snapshot_path"`
		MemFilePath  string `json:"mem_file_path"`
	}
	MemoryBackend struct {
		BackendType string `json:"backend_type"` // "File"
		BackendPath string `json:"backend_path"`
	}
	SnapshotLoadParams struct {
		SnapshotPath    string         `json:"snapshot_path"`
		MemBackend      *MemoryBackend `json:"mem_backend,omitempty"`
		TrackDirtyPages bool           `json:"track_dirty_pages"`
		ResumeVM        bool           `json:"resume_vm"`
	}
	BootSource struct {
		KernelImagePath string `json:"kernel_image_path"`
		InitrdPath      string `json:"initrd_path,omitempty"`
		BootArgs        string `json:"boot_args,omitempty"`
	}
	Drive struct {
		DriveID      string `json:"drive_id"`
		PathOnHost   string `json:"path_on_host"`
		IsRootDevice bool   `json:"is_root_device"`
		IsReadOnly   bool   `json:"is_read_only"`
	}
	NetworkInterface struct {
		IfaceID     string `json:"iface_id"`
		HostDevName string `json:"host_dev_name"`
		GuestMAC    string `json:"guest_mac,omitempty"`
	}
	action struct {
		ActionType string `json:"action_type"`
	}
	// InstanceInfo is GET /.
	InstanceInfo struct {
		ID         string `json:"id"`
		State      string `json:"state"`
		VMMVersion string `json:"vmm_version"`
		AppName    string `json:"app_name"`
	}
)

func (c *Client) PutLogger(ctx context.Context, l Logger) error {
	return c.do(ctx, "PUT", "/logger", l, nil)
}
func (c *Client) PutMetrics(ctx context.Context, m Metrics) error {
	return c.do(ctx, "PUT", "/metrics", m, nil)
}
func (c *Client) PutMachineConfig(ctx context.Context, m MachineConfig) error {
	return c.do(ctx, "PUT", "/machine-config", m, nil)
}
func (c *Client) PutBootSource(ctx context.Context, b BootSource) error {
	return c.do(ctx, "PUT", "/boot-source", b, nil)
}
func (c *Client) PutDrive(ctx context.Context, d Drive) error {
	return c.do(ctx, "PUT", "/drives/"+d.DriveID, d, nil)
}
func (c *Client) PutNetworkInterface(ctx context.Context, n NetworkInterface) error {
	return c.do(ctx, "PUT", "/network-interfaces/"+n.IfaceID, n, nil)
}

func (c *Client) PatchVM(ctx context.Context, state string) error {
	return c.do(ctx, "PATCH", "/vm", VM{State: state}, nil)
}
func (c *Client) CreateSnapshot(ctx context.Context, p SnapshotCreateParams) error {
	return c.do(ctx, "PUT", "/snapshot/create", p, nil)
}
func (c *Client) LoadSnapshot(ctx context.Context, p SnapshotLoadParams) error {
	return c.do(ctx, "PUT", "/snapshot/load", p, nil)
}

// Action sends InstanceStart, SendCtrlAltDel or FlushMetrics.
func (c *Client) Action(ctx context.Context, kind string) error {
	return c.do(ctx, "PUT", "/actions", action{ActionType: kind}, nil)
}

// Describe is GET /: the instance's state.
func (c *Client) Describe(ctx context.Context) (InstanceInfo, error) {
	var info InstanceInfo
	err := c.do(ctx, "GET", "/", nil, &info)
	return info, err
}
