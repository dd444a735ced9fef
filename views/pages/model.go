// Package pages holds one component per route and one per HTMX-swappable region, named after
// the route they render, with the view models they take. Views never see database rows.
package pages

import (
	"fmt"
	"time"

	"hearth/views/components"
)

// VMRow is one line of the VM list.
type VMRow struct {
	ID, Name, State string
	VCPUs           int
	MemoryMiB       int
	GuestIP         GuestIPView
	CPU, Mem        Spark  // last 15 min; empty without metrics
	Node            string // the VM's node, when there are several
}

// VMList is the polled part of the VM list: the state tabs with their counts, the rows of
// the page shown, and the pager. Hrefs keep the query.
type VMList struct {
	Rows     []VMRow
	Poll     string // the partial's own URL, with the query and the page
	Tabs     []ListTab
	Sorts    []ListTab // the column headers that sort: Active, and the href that sorts by them
	Total    int       // VMs the query selects
	From, To int       // rows shown, 1-based
	Page     int
	Pages    int
	Prev     string // "" on the first page
	Next     string // "" on the last
	Filtered bool   // a search or filter is on (an empty list then says "no match")
}

// ListTab is a link of the list's header: a state tab or a sortable column.
type ListTab struct {
	Key, Label string
	Count      int
	Href       string
	Active     bool
	Arrow      string // a sorted column's direction, "↑" or "↓"
}

// ListForm is the search form over the list: what it holds now.
type ListForm struct {
	Q, State, Badge, Sort, Order string
	States, Badges               []string
}

// Spark is a tiny inline chart (drawn in a 120×24 box) with the current value.
type Spark struct {
	Line  components.Line
	Value string // "12.5 %" or "—"
}

// GuestIPView is the guest IP panel: the current value, who set it and when, and the
// override form's state after a submit.
type GuestIPView struct {
	VMID   string
	IP     string // "" when unknown
	Source string
	// Registered is what the guest itself registered, shown while a manual value is in
	// effect over it ("" otherwise).
	Registered string
	Age        string // "3 min ago"
	UpdatedAt  string // RFC 3339, for the tooltip
	Input      string // what the operator typed, kept on error
	Error      string
	Saved      string // confirmation after a successful change
	CSRF       string
}

// VMView is the VM page.
type VMView struct {
	ID, Name, State  string
	VCPUs, MemoryMiB int
	Kernel, Initrd   string
	Rootfs, BootArgs string
	Image            string // the image it was made from, "" for none
	Snapshots        SnapshotsView
	BootArgsDerived  bool // BootArgs were not written by the operator but derived
	MAC              string
	Created          string
	GuestIP          GuestIPView
	Audit            []AuditRow
	CSRF             string
	Provisioned      bool
	Address          string
	Install          *InstallView // nil when installs are not available
	Status           StatusView
	Metrics          *MetricsView
	HostKey          string
	HostKeySource    string
	Node             string // the node that owns it, when the cluster has several; "" otherwise
	NetworkNote      string // why VMs get no network and how to change that; "" when they do
	ConsoleIdle      string // how long a silent console viewer stays connected, e.g. "30m0s"
}

// InstallView is the agent-install panel: the latest job's steps, or the start form.
type InstallView struct {
	VMID       string
	State      string // "" (never run), running, done, failed
	Steps      []InstallStep
	Error      string
	StartError string // why the last start was refused
	Queued     string // a one-click install queued for the VM's node, not yet started there
	CSRF       string
}

// InstallStep is one step's line.
type InstallStep struct {
	Name, State, Detail string
}

// StatusView is the VM's lifecycle panel: state, actions, why it failed, its console.
type StatusView struct {
	VMID, State, Reason string
	Driver              string
	PID                 int
	Console             string // last lines of the serial console, when there is no terminal on it
	Interactive         bool   // the running VM's console is held: the page's terminal shows it
	Error               string // why the last action was refused
	CSRF                string
	CanRun              bool     // this manager runs VMs at all
	Name                string   // for the Delete button the poll keeps in step
	Node                string   // the node that runs it
	Pending             []string // actions queued for its node, not yet carried out
}

// Busy reports whether the VM may be running, so it cannot be deleted or edited.
func (v StatusView) Busy() bool {
	return v.State == "starting" || v.State == "running" || v.State == "paused" || v.State == "stopping" || v.State == "node down"
}

// SnapshotsView is the VM page's snapshots panel.
type SnapshotsView struct {
	VMID, VMName string
	Live         bool // the VM runs (or is paused): it can be snapshotted, and a restore stops it first
	CanRun       bool
	Taking       bool // a snapshot is being taken: the panel polls
	Rows         []SnapshotRow
	Suggest      string // a name for the next snapshot
	Error        string
	CSRF         string
}

// SnapshotRow is one snapshot.
type SnapshotRow struct {
	Name, State, Kind, Size, Created, Age, Paused, Error string
}

// MetricsView is the VM page's metrics panel.
type MetricsView struct {
	VMID   string
	Badge  string // stopped, waiting, host, live, stale
	Label  string // what the badge says, e.g. "live · agent · 3 s ago"
	Why    string // why the agent is missing
	Window string // "15m", "1h" or "24h"
	// Every is how often the panel polls: the collector's interval.
	Every       time.Duration
	Stats       []Stat
	Filesystems []FSBar
	FSNote      string // when the filesystems are not from the latest sample: how old they are
	Charts      []Chart
}

// Stat is one current figure: Value, and Second beside it (e.g. what programs wrote next to
// what the device saw); Tip explains the figure on hover.
type Stat struct {
	Label, Value, Second, Hint, Tip string
}

// FSBar is one guest filesystem's use.
type FSBar struct {
	Mount, FSType, Device string
	Used, Size            string // "1.2 GiB"
	Percent               float64
	Warn                  bool // at or above 90 %
}

// Chart is a line chart (drawn in a 600×120 box), newest on the right: one line per
// series, behind them the stretches with no samples, below them a strip that says where
// each stretch's samples came from.
type Chart struct {
	Title, Max string
	Series     []Series
	Gaps       []Span // x from 0 to 600
	Sources    []Span // Kind "agent" or "host"
	Note       string // what the chart does not draw, and why
	Empty      string // what to say when there is nothing to draw
}

// Series is one line of a chart; Class colours it (a Tailwind stroke class).
type Series struct {
	Name, Class string
	Dashed      bool
	Line        components.Line
}

// Span is a stretch of a chart's window, in the chart's x units.
type Span struct {
	X, W float64
	Kind string
}

// Drawn reports whether any series has something to draw.
func (c Chart) Drawn() bool {
	for _, s := range c.Series {
		if s.Line.Path(600, 120) != "" {
			return true
		}
	}
	return false
}

// AuditRow is one audit-log line on the VM page.
type AuditRow struct {
	At, Age, Actor, Action, Addr, Detail string
}

// VMForm is the create/edit form.
type VMForm struct {
	Title, Action, Submit, Cancel string
	Name, VCPUs, MemoryMiB        string
	Kernel, Initrd, Rootfs        string
	BootArgs                      string
	Errors                        map[string]string
	Error                         string
	CSRF                          string
	New                           bool   // the create form, which offers provisioning
	Provision                     bool   // the provisioning box is ticked
	ProvisionUnavailable          string // why provisioning cannot be offered, if it cannot
	ImageDirs                     string // where kernels and disks may come from, for the hints
	DerivedBootArgs               string // what an empty boot args field becomes, with a root filesystem
	Image                         string // the image chosen; "" for none
	Images                        []ImageOption
	Node                          string        // the node chosen; "" for the one with the most room
	Nodes                         []ImageOption // offered when there are several
}

// ImageOption is an image the form offers.
type ImageOption struct {
	Name, Label string
}

// Advanced reports whether the form's own-files part has something in it (a value or an
// error), so that it opens.
func (f VMForm) Advanced() bool {
	for _, k := range []string{"kernel", "initrd", "rootfs", "boot_args"} {
		if f.Errors[k] != "" {
			return true
		}
	}
	return f.Kernel != "" || f.Initrd != "" || f.Rootfs != "" || f.BootArgs != ""
}

// Login is the sign-in page.
type Login struct {
	Name, Next, Error, CSRF string
}

// Flash kinds.
const (
	FlashError   = "error"
	FlashSuccess = "success"
)

// kernelHint says where a VM's files may come from.
func kernelHint(dirs string) string {
	if dirs == "" {
		return "Absolute path on this host; checked when the VM starts."
	}
	return "A file under " + dirs + " (the image directories); checked again when the VM starts."
}

// every is an htmx polling trigger for d (whole seconds, at least one).
func every(d time.Duration) string {
	s := int(d.Round(time.Second) / time.Second)
	if s < 1 {
		s = 5
	}
	return fmt.Sprintf("every %ds", s)
}
