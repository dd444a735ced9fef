package web

import (
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"hearth/app"
)

// Context keys.
const (
	keyActor    = "actor"     // app.Actor of the request
	keyGuestVM  = "guest_vm"  // id of the VM whose registration token authenticated the request
	keyNodeCall = "node_call" // set when another node called (nodeAuth)
	keyUser     = "user"      // *app.User signed in through the UI
)

func (s *Server) apiRoutes(g *echo.Group) {
	g.Use(s.bearer)
	g.GET("/vms", s.apiListVMs, operatorOnly)
	g.POST("/vms", s.apiCreateVM, operatorOnly)
	g.GET("/vms/:id", s.apiGetVM, operatorOnly)
	g.PATCH("/vms/:id", s.onOwner(s.apiUpdateVM), operatorOnly)
	g.DELETE("/vms/:id", s.apiDeleteVM, operatorOnly)
	g.POST("/vms/:id/guest-ip", s.onOwner(s.apiSetGuestIP))
	g.POST("/vms/:id/registration-token", s.apiRotateToken, operatorOnly)
	g.GET("/vms/:id/seed.iso", s.onOwner(s.seedISO), operatorOnly)
	g.GET("/vms/:id/metrics", s.apiVMMetrics, operatorOnly)
	g.GET("/vms/:id/console", s.apiConsole, operatorOnly)
	g.POST("/vms/:id/start", s.apiLifecycle(app.ActionStart, http.StatusOK), operatorOnly)
	g.POST("/vms/:id/stop", s.apiLifecycle(app.ActionStop, http.StatusAccepted), operatorOnly)
	g.POST("/vms/:id/restart", s.apiLifecycle(app.ActionRestart, http.StatusAccepted), operatorOnly)
	g.POST("/vms/:id/pause", s.apiLifecycle(app.ActionPause, http.StatusOK), operatorOnly)
	g.POST("/vms/:id/resume", s.apiLifecycle(app.ActionResume, http.StatusOK), operatorOnly)
	g.GET("/actions/:id", s.apiAction, operatorOnly)
	g.GET("/vms/:id/snapshots", s.apiListSnapshots, operatorOnly)
	g.POST("/vms/:id/snapshots", s.onOwner(s.apiTakeSnapshot), operatorOnly)
	g.GET("/vms/:id/snapshots/:name", s.apiGetSnapshot, operatorOnly)
	g.POST("/vms/:id/snapshots/:name/restore", s.onOwner(s.apiRestoreSnapshot), operatorOnly)
	g.DELETE("/vms/:id/snapshots/:name", s.onOwner(s.apiDeleteSnapshot), operatorOnly)
	g.POST("/vms/:id/agent/install", s.apiStartInstall, operatorOnly)
	g.GET("/nodes", s.apiNodes, operatorOnly)
	g.GET("/images", s.apiListImages, operatorOnly)
	g.POST("/images", s.apiCreateImage, operatorOnly)
	g.GET("/images/:name", s.apiGetImage, operatorOnly)
	g.DELETE("/images/:name", s.apiDeleteImage, operatorOnly)
	g.GET("/vms/:id/agent/install", s.apiInstallStatus, operatorOnly)
	// Unknown paths under /v1 are JSON 404s, not the UI's page.
	g.Any("/*", func(c echo.Context) error { return app.Errorf(app.ENOTFOUND, "no such API endpoint") })
}

// bearer authenticates API requests: an operator's API token, or a VM's registration token
// (which operatorOnly then confines to that VM's guest-ip).
func (s *Server) bearer(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header.Get(echo.HeaderAuthorization)
		scheme, token, ok := strings.Cut(h, " ")
		if h == "" {
			return app.Errorf(app.EUNAUTHORIZED, "missing Authorization: Bearer <token>")
		}
		if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || strings.ContainsAny(token, " \t") {
			return app.Errorf(app.EUNAUTHORIZED, "Authorization must be: Bearer <token>")
		}
		addr := c.RealIP()
		if strings.HasPrefix(token, app.PrefixRegistrationToken) {
			// A guest: the token names its VM, and the guest speaks for that VM only.
			id, err := s.VMs.GuestVM(c.Request().Context(), token)
			if err != nil {
				return err
			}
			c.Set(keyGuestVM, id)
			c.Set(keyActor, app.Actor{Kind: app.ActorGuest, Name: id, Addr: addr})
			return next(c)
		}
		name, err := s.Auth.APIToken(c.Request().Context(), token)
		if err != nil {
			return err
		}
		c.Set(keyActor, app.Actor{Kind: app.ActorToken, Name: name, Addr: addr})
		return next(c)
	}
}

// operatorOnly refuses guests: a registration token may only set its own VM's guest IP.
func operatorOnly(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if actor(c).Kind == app.ActorGuest {
			return app.Errorf(app.EFORBIDDEN, "a registration token may only set its own VM's guest IP")
		}
		return next(c)
	}
}

func actor(c echo.Context) app.Actor {
	a, _ := c.Get(keyActor).(app.Actor)
	return a
}

// vmJSON is a VM on the wire.
type vmJSON struct {
	ID                string     `json:"id"`
	Name              string     `json:"name"`
	Image             string     `json:"image,omitempty"`
	State             string     `json:"state"`
	VCPUs             int        `json:"vcpus"`
	MemoryMiB         int        `json:"memory_mib"`
	Kernel            string     `json:"kernel"`
	Initrd            string     `json:"initrd"`
	Rootfs            string     `json:"rootfs"`
	BootArgs          string     `json:"boot_args"`
	MAC               string     `json:"mac"`
	GuestIP           *string    `json:"guest_ip"`
	GuestIPSource     *string    `json:"guest_ip_source"`
	GuestIPUpdatedAt  *time.Time `json:"guest_ip_updated_at"`
	Hypervisor        string     `json:"hypervisor"`
	StateReason       string     `json:"state_reason,omitempty"`
	Address           string     `json:"address,omitempty"`
	Provisioned       bool       `json:"provisioned"`
	SeedURL           string     `json:"seed_url,omitempty"`
	HostKey           string     `json:"host_key,omitempty"`
	CreatedAt         time.Time  `json:"created_at"`
	UpdatedAt         time.Time  `json:"updated_at"`
	RegistrationToken string     `json:"registration_token,omitempty"`
	Node              string     `json:"node,omitempty"`
	// NodeState is "down" while the VM's node misses its heartbeats: its state above is
	// the last one recorded, and nothing is known of it since.
	NodeState string `json:"node_state,omitempty"`
	// QueuedAction is the action a lifecycle request queued for the VM's node.
	QueuedAction *actionJSON `json:"queued_action,omitempty"`
}

func toJSON(v *app.VM) vmJSON {
	j := vmJSON{ID: v.ID, Name: v.Name, Image: v.Image, State: string(v.State), VCPUs: v.VCPUs, MemoryMiB: v.MemoryMiB,
		Kernel: v.Kernel, Initrd: v.Initrd, Rootfs: v.Rootfs, BootArgs: v.BootArgs, MAC: v.MAC,
		CreatedAt: v.CreatedAt, UpdatedAt: v.UpdatedAt, Provisioned: v.Provisioned, HostKey: v.HostKey,
		Hypervisor: v.Hypervisor, StateReason: v.StateReason, Address: v.Address, Node: v.Node}
	if v.Provisioned {
		j.SeedURL = "/v1/vms/" + v.ID + "/seed.iso"
	}
	if v.GuestIP != "" {
		ip, src, at := v.GuestIP, string(v.GuestIPSource), v.GuestIPUpdatedAt
		j.GuestIP, j.GuestIPSource, j.GuestIPUpdatedAt = &ip, &src, &at
	}
	return j
}

func (s *Server) apiListVMs(c echo.Context) error {
	q, err := parseListQuery(c.QueryParams())
	if err != nil {
		return err
	}
	limit, err := parseLimit(c.QueryParam("limit"))
	if err != nil {
		return err
	}
	var cur cursor
	if raw := c.QueryParam("cursor"); raw != "" {
		if cur, err = parseCursor(raw, q); err != nil {
			return err
		}
	}
	p, err := s.findVMs(c.Request().Context(), q, cur.Offset, cur.After, limit)
	if err != nil {
		return err
	}
	out := make([]vmJSON, len(p.VMs))
	states := s.nodeStates(c.Request().Context())
	for i, v := range p.VMs {
		out[i] = toJSON(v)
		out[i].NodeState = states[v.Node]
	}
	var next *string
	if p.More {
		n := cursor{Query: q.hash(), After: &p.Last}
		if q.inMemory() {
			n = cursor{Query: q.hash(), Offset: cur.Offset + len(p.VMs)}
		}
		e := n.encode()
		next = &e
	}
	return c.JSON(http.StatusOK, map[string]any{"vms": out, "next_cursor": next, "total": p.Total})
}

// vmSpecJSON is the body of create and update. Pointers tell "absent" from zero.
type vmSpecJSON struct {
	Provision  *bool   `json:"provision"` // create only
	Hypervisor *string `json:"hypervisor"`
	Name       *string `json:"name"`
	Image      *string `json:"image"` // boot from this image; the path fields below still win
	VCPUs      *int    `json:"vcpus"`
	MemoryMiB  *int    `json:"memory_mib"`
	Kernel     *string `json:"kernel"`
	Initrd     *string `json:"initrd"`
	Rootfs     *string `json:"rootfs"`
	BootArgs   *string `json:"boot_args"`
	// Node is where to make it (create only): that node, or the up node with the most
	// free memory that fits when absent.
	Node *string `json:"node,omitempty"`
}

func (j vmSpecJSON) update() app.VMUpdate {
	return app.VMUpdate{Hypervisor: j.Hypervisor, Name: j.Name, Image: j.Image, VCPUs: j.VCPUs, MemoryMiB: j.MemoryMiB, Kernel: j.Kernel,
		Initrd: j.Initrd, Rootfs: j.Rootfs, BootArgs: j.BootArgs}
}

func (s *Server) apiCreateVM(c echo.Context) error {
	var body vmSpecJSON
	if err := decodeJSON(c, &body); err != nil {
		return err
	}
	if body.VCPUs != nil && *body.VCPUs == 0 || body.MemoryMiB != nil && *body.MemoryMiB == 0 {
		// 0 would silently mean "default"; an explicit 0 is a mistake worth saying so.
		return app.Invalid(map[string]string{"vcpus/memory_mib": "must be positive when given"})
	}
	spec := app.VMSpec{Provision: body.Provision}
	body.update().Apply(&spec)
	if target, err := s.placement(c, body.Node, spec.MemoryMiB, spec.Image); err != nil {
		return err
	} else if target != "" {
		// Another node makes it: its seed's secrets are sealed with its own key, its
		// images are its own. The answer is that node's.
		body.Node = nil
		status, answer, err := s.callNode(c, target, http.MethodPost, "/v1/node/vms", body)
		if err != nil {
			return err
		}
		return c.JSONBlob(status, answer)
	}
	v, token, err := s.VMs.Create(c.Request().Context(), spec, actor(c))
	if err != nil {
		return err
	}
	j := toJSON(v)
	j.RegistrationToken = token
	c.Response().Header().Set(echo.HeaderLocation, "/v1/vms/"+v.ID)
	return c.JSON(http.StatusCreated, j)
}

func (s *Server) apiGetVM(c echo.Context) error {
	v, err := s.VMs.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	j := toJSON(v)
	j.NodeState = s.nodeStates(c.Request().Context())[v.Node]
	return c.JSON(http.StatusOK, j)
}

func (s *Server) apiUpdateVM(c echo.Context) error {
	var body vmSpecJSON
	if err := decodeJSON(c, &body); err != nil {
		return err
	}
	if body.VCPUs != nil && *body.VCPUs == 0 || body.MemoryMiB != nil && *body.MemoryMiB == 0 {
		return app.Invalid(map[string]string{"vcpus/memory_mib": "must be positive when given"})
	}
	if body.Provision != nil {
		return app.Invalid(map[string]string{"provision": "is chosen at creation and cannot change"})
	}
	if body.Node != nil {
		return app.Invalid(map[string]string{"node": "a VM stays on the node it was made on"})
	}
	v, err := s.VMs.Update(c.Request().Context(), c.Param("id"), body.update(), actor(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toJSON(v))
}

// apiDeleteVM is DELETE /v1/vms/{id}: 204; for another node's VM 202 with the queued
// action (its files are on that node).
func (s *Server) apiDeleteVM(c echo.Context) error {
	v, queued, err := s.VMs.Ask(c.Request().Context(), c.Param("id"), app.ActionDelete, actor(c))
	if err != nil {
		return err
	}
	if queued != nil {
		j := toJSON(v)
		a := toActionJSON(queued)
		j.QueuedAction = &a
		return c.JSON(http.StatusAccepted, j)
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) apiRotateToken(c echo.Context) error {
	token, err := s.VMs.RotateRegistrationToken(c.Request().Context(), c.Param("id"), actor(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"registration_token": token})
}

// seedISO serves a provisioned VM's NoCloud seed, for use with any hypervisor. It holds the
// VM's tokens and host key, so it is for operators only (API token or signed-in session).
func (s *Server) seedISO(c echo.Context) error {
	ctx := c.Request().Context()
	v, err := s.VMs.Get(ctx, c.Param("id"))
	if err != nil {
		return err
	}
	path, done, err := s.VMs.RenderSeed(ctx, v.ID) // rendered for this download, then removed
	if err != nil {
		return err
	}
	defer done()
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Attachment(path, v.Name+"-seed.iso")
}

// apiLifecycle serves POST /v1/vms/{id}/start|stop|restart|pause|resume. Start answers 200
// once the VM runs; stop and restart answer 202 with the VM stopping. A VM of another node
// gets the action queued for that node: 202 with the VM as it is and the queued_action
// (GET /v1/actions/{id} follows it).
func (s *Server) apiLifecycle(action string, status int) echo.HandlerFunc {
	return func(c echo.Context) error {
		v, queued, err := s.VMs.Ask(c.Request().Context(), c.Param("id"), action, actor(c))
		if err != nil {
			return err
		}
		j := toJSON(v)
		if queued != nil {
			a := toActionJSON(queued)
			j.QueuedAction, status = &a, http.StatusAccepted
		}
		return c.JSON(status, j)
	}
}

type actionJSON struct {
	ID         string     `json:"id"`
	VMID       string     `json:"vm_id"`
	Node       string     `json:"node"`
	Action     string     `json:"action"`
	State      string     `json:"state"` // queued, running, done, failed
	Error      string     `json:"error,omitempty"`
	By         string     `json:"by"`
	CreatedAt  time.Time  `json:"created_at"`
	FinishedAt *time.Time `json:"finished_at"`
	Href       string     `json:"href"`
}

func toActionJSON(a *app.VMAction) actionJSON {
	j := actionJSON{ID: a.ID, VMID: a.VMID, Node: a.Node, Action: a.Action, State: a.State, Error: a.Error, By: a.Actor,
		CreatedAt: a.CreatedAt, Href: "/v1/actions/" + a.ID}
	if !a.FinishedAt.IsZero() {
		j.FinishedAt = &a.FinishedAt
	}
	return j
}

// apiAction is GET /v1/actions/{id}: a queued action and how it ended.
func (s *Server) apiAction(c echo.Context) error {
	a, err := s.VMs.Action(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toActionJSON(a))
}
