package web

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"hearth/app"
	"hearth/app/vm"
)

// Headers a node sends with a request it passes on for someone: who, and from where. Only
// trusted with the node credential.
const (
	hdrActor     = "X-Hearth-Actor"
	hdrActorAddr = "X-Hearth-Actor-Addr"
)

// nodeRoutes are the endpoints other nodes call for what only this node can do (its VMs'
// consoles): /v1/node/…, with the cluster's node credential (Authorization: Node <secret>)
// and nothing else; an operator's token is refused there.
func (s *Server) nodeRoutes(g *echo.Group) {
	g.Use(s.nodeAuth)
	g.GET("/vms/:id/console", s.streamConsole)
	g.POST("/vms", s.apiCreateVM) // placed here by another node
	// What needs the VM's host: its files, seal key, images, guest network.
	g.PATCH("/vms/:id", s.apiUpdateVM)
	g.POST("/vms/:id/guest-ip", s.apiSetGuestIP)
	g.GET("/vms/:id/seed.iso", s.seedISO)
	g.POST("/vms/:id/snapshots", s.apiTakeSnapshot)
	g.POST("/vms/:id/snapshots/:name/restore", s.apiRestoreSnapshot)
	g.DELETE("/vms/:id/snapshots/:name", s.apiDeleteSnapshot)
	g.POST("/vms/:id/agent/install", s.apiStartInstall)
	g.Any("/*", func(c echo.Context) error { return app.Errorf(app.ENOTFOUND, "no such node endpoint") })
}

// nodeAuth admits the other nodes only: the act is recorded as the operator the calling
// node passes on (its X-Hearth-Actor), from the address it says.
func (s *Server) nodeAuth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		scheme, secret, _ := strings.Cut(c.Request().Header.Get(echo.HeaderAuthorization), " ")
		if s.Nodes == nil || !strings.EqualFold(scheme, "Node") || !s.Nodes.Authorized(secret) {
			s.Logger.Warn("node endpoint refused", "path", c.Request().URL.Path, "remote", c.RealIP())
			return app.Errorf(app.EUNAUTHORIZED, "node endpoints take the cluster's node credential (Authorization: Node <secret>), nothing else")
		}
		by := app.ParseActor(c.Request().Header.Get(hdrActor), c.Request().Header.Get(hdrActorAddr))
		if by.Kind != app.ActorUser && by.Kind != app.ActorToken {
			by = app.Actor{Kind: app.ActorSystem, Name: "node", Addr: c.RealIP()}
		}
		c.Set(keyActor, by)
		c.Set(keyNodeCall, true)
		return next(c)
	}
}

// elsewhere is the VM of the request's :id when it is another node's and the request is
// an operator's: it goes to that node. Nil when the VM is this node's, or unknown (the
// handler says so), or the request came from another node (never passed on twice), or is
// a guest's (a guest speaks to its own node, and is never made an operator by a node).
func (s *Server) elsewhere(c echo.Context) *app.VM {
	if s.Nodes == nil || c.Get(keyNodeCall) != nil {
		return nil
	}
	if by := actor(c); by.Kind != app.ActorUser && by.Kind != app.ActorToken {
		return nil
	}
	v, err := s.VMs.Get(c.Request().Context(), c.Param("id"))
	if err != nil || v.Node == "" || v.Node == s.Nodes.Name() {
		return nil
	}
	return v
}

// onOwner serves an API request about a VM here when the VM is this node's, and passes it
// on to the VM's node (the same path under /v1/node) when it is another's: what only the
// VM's host can do (its files, its seal key, its images, its guest network).
func (s *Server) onOwner(h echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if v := s.elsewhere(c); v != nil {
			return s.proxyToNode(c, v, "/v1/node"+strings.TrimPrefix(c.Request().URL.Path, "/v1"))
		}
		return h(c)
	}
}

// askOwner sends an operator's request about another node's VM (a page's form) to that
// node's API as JSON: path is under /v1/node. Its refusal comes back as the error it gave.
func (s *Server) askOwner(c echo.Context, v *app.VM, method, path string, body any) error {
	status, answer, err := s.callNode(c, v.Node, method, "/v1/node"+path, body)
	if err != nil {
		return err
	}
	if status < 300 {
		return nil
	}
	return nodeError(v.Node, status, answer)
}

// nodeError is the error another node answered with (its code, message and fields).
func nodeError(node string, status int, answer []byte) error {
	var out struct {
		Error *struct {
			Code    string            `json:"code"`
			Message string            `json:"message"`
			Fields  map[string]string `json:"fields"`
		} `json:"error"`
	}
	if json.Unmarshal(answer, &out) != nil || out.Error == nil {
		return app.Errorf(app.EUNAVAILABLE, "node %s answered %d", node, status)
	}
	if len(out.Error.Fields) > 0 {
		return app.Invalid(out.Error.Fields)
	}
	return app.Errorf(out.Error.Code, "node %s: %s", node, out.Error.Message)
}

// proxyToNode passes the request on to the VM's node at path, with the node credential and
// the operator's name, and relays the answer (a WebSocket upgrade too). The operator's own
// credentials (cookie, token) and the browser's Origin stay here.
func (s *Server) proxyToNode(c echo.Context, v *app.VM, path string) error {
	base, cred, err := s.Nodes.Peer(c.Request().Context(), v.Node)
	if err != nil {
		return err
	}
	target, err := url.Parse(base)
	if err != nil {
		return app.Errorf(app.EUNAVAILABLE, "node %s has a bad URL %q", v.Node, base)
	}
	by := actor(c)
	p := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.URL.Path, r.Out.URL.RawPath, r.Out.URL.RawQuery = path, "", ""
			for _, h := range []string{"Cookie", "Origin", echo.HeaderAuthorization, hdrActor, hdrActorAddr, "X-Forwarded-For"} {
				r.Out.Header.Del(h)
			}
			r.Out.Header.Set(echo.HeaderAuthorization, cred)
			r.Out.Header.Set(hdrActor, by.String())
			r.Out.Header.Set(hdrActorAddr, by.Addr)
		},
		Transport: nodeTransport,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.Logger.Warn("node unreachable", "node", v.Node, "url", base, "error", err)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte(`{"error":{"code":"unavailable","message":"node ` + v.Node + ` did not answer"}}`)) //nolint:errcheck
		},
	}
	p.ServeHTTP(c.Response(), c.Request())
	return nil
}

// placement is the node a new VM goes to: "" for this one. A node asked by another makes
// it here; otherwise want, or the up node with the most free memory that fits (among those
// that have the image it is made from).
func (s *Server) placement(c echo.Context, want *string, memoryMiB int, image string) (string, error) {
	if s.Nodes == nil || c.Get(keyNodeCall) != nil {
		if want != nil && *want != "" && (s.Nodes == nil || *want != s.Nodes.Name()) {
			return "", app.Errorf(app.EINVALID, "node %q: this manager makes VMs on itself only", *want)
		}
		return "", nil
	}
	if memoryMiB == 0 {
		memoryMiB = vm.DefaultMemoryMiB
	}
	w := ""
	if want != nil {
		w = *want
	}
	target, err := s.Nodes.Place(c.Request().Context(), w, memoryMiB, image)
	if err != nil || target == s.Nodes.Name() {
		return "", err
	}
	return target, nil
}

// callNode sends body as JSON to node's path with the node credential and the operator's
// name, and returns its status and answer.
func (s *Server) callNode(c echo.Context, node, method, path string, body any) (int, []byte, error) {
	base, cred, err := s.Nodes.Peer(c.Request().Context(), node)
	if err != nil {
		return 0, nil, err
	}
	b, err := json.Marshal(body)
	if err != nil {
		return 0, nil, err
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(b))
	if err != nil {
		return 0, nil, app.Errorf(app.EUNAVAILABLE, "node %s has a bad URL %q", node, base)
	}
	by := actor(c)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(echo.HeaderAuthorization, cred)
	req.Header.Set(hdrActor, by.String())
	req.Header.Set(hdrActorAddr, by.Addr)
	resp, err := nodeClient.Do(req)
	if err != nil {
		return 0, nil, app.Errorf(app.EUNAVAILABLE, "node %s did not answer: %s", node, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, nil, app.Errorf(app.EUNAVAILABLE, "node %s's answer: %s", node, err)
	}
	return resp.StatusCode, answer, nil
}

// nodeTransport carries every request to another node: one pool of connections, idle
// ones closed after a minute.
var nodeTransport = &http.Transport{ResponseHeaderTimeout: 15 * time.Second, IdleConnTimeout: time.Minute,
	MaxIdleConnsPerHost: 4, DisableCompression: true}

var nodeClient = &http.Client{Timeout: 30 * time.Second, Transport: nodeTransport,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// createOn asks node to make the VM spec describes and returns its id; the node's refusal
// comes back as the error it gave.
func (s *Server) createOn(c echo.Context, node string, spec app.VMSpec) (string, error) {
	body := vmSpecJSON{Provision: spec.Provision, Hypervisor: &spec.Hypervisor, Name: &spec.Name, Image: &spec.Image, Kernel: &spec.Kernel,
		Initrd: &spec.Initrd, Rootfs: &spec.Rootfs, BootArgs: &spec.BootArgs}
	if spec.VCPUs > 0 {
		body.VCPUs = &spec.VCPUs
	}
	if spec.MemoryMiB > 0 {
		body.MemoryMiB = &spec.MemoryMiB
	}
	status, answer, err := s.callNode(c, node, http.MethodPost, "/v1/node/vms", body)
	if err != nil {
		return "", err
	}
	var out struct {
		ID string `json:"id"`
	}
	if status != http.StatusCreated {
		return "", nodeError(node, status, answer)
	}
	if err := json.Unmarshal(answer, &out); err != nil || out.ID == "" {
		return "", app.Errorf(app.EUNAVAILABLE, "node %s answered %d, without the VM", node, status)
	}
	return out.ID, nil
}
