package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"

	"hearth/app"
	"hearth/app/console"
)

// The console's WebSocket protocol: binary frames carry the serial port's raw bytes both
// ways (a joining viewer first gets the newest 64 KiB); text frames carry small JSON
// control messages. From the viewer: {"type":"resize","cols":N,"rows":N} (a serial port
// has no window size to pass on: it is accepted and ignored; `stty rows N cols N` in the
// guest sets it). To the viewer: {"type":"status","state":"connected"|"waiting",
// "message":…} when the console comes or goes.
type consoleControl struct {
	Type    string `json:"type"`
	Cols    int    `json:"cols,omitempty"`
	Rows    int    `json:"rows,omitempty"`
	State   string `json:"state,omitempty"`
	Message string `json:"message,omitempty"`
}

// uiConsole is GET /vms/{id}/console/ws for a signed-in operator: the page's own origin
// only (a cross-site page cannot ride the session cookie).
func (s *Server) uiConsole(c echo.Context) error {
	r := c.Request()
	if o, err := url.Parse(r.Header.Get("Origin")); err != nil || o.Host == "" || !strings.EqualFold(o.Host, r.Host) {
		return app.Errorf(app.EFORBIDDEN, "a console opens from this manager's own pages only")
	}
	return s.streamConsole(c)
}

// apiConsole is GET /v1/vms/{id}/console for API tokens.
func (s *Server) apiConsole(c echo.Context) error { return s.streamConsole(c) }

// join counts a viewer of the VM's console, refusing past the bound.
func (s *Server) join(id string) (leave func(), err error) {
	s.consoleMu.Lock()
	defer s.consoleMu.Unlock()
	if s.viewers[id] >= s.ConsoleViewers {
		return nil, app.Errorf(app.ECONFLICT, "this console has %d viewers already, the most at once", s.ConsoleViewers)
	}
	s.viewers[id]++
	return func() {
		s.consoleMu.Lock()
		defer s.consoleMu.Unlock()
		if s.viewers[id]--; s.viewers[id] <= 0 {
			delete(s.viewers, id)
		}
	}, nil
}

func (s *Server) streamConsole(c echo.Context) error {
	ctx, id, by := c.Request().Context(), c.Param("id"), actor(c)
	if v, err := s.VMs.Get(ctx, id); err == nil && s.remote(v) {
		if c.Get(keyNodeCall) != nil {
			return app.Errorf(app.ECONFLICT, "VM %s runs on node %s, not here", v.Name, v.Node)
		}
		// Its node holds the console: the session is passed on there (and audited there).
		return s.proxyToNode(c, v, "/v1/node/vms/"+id+"/console")
	}
	hub, err := s.VMs.Console(ctx, id)
	if err != nil {
		return err
	}
	leave, err := s.join(id)
	if err != nil {
		return err
	}
	defer leave()
	s.sessions.Add(1)
	defer s.sessions.Done()
	// The server's read and write timeouts are for requests, not for a session of hours.
	rc := http.NewResponseController(c.Response())
	rc.SetReadDeadline(time.Time{})                             //nolint:errcheck // best effort: not every writer can
	rc.SetWriteDeadline(time.Time{})                            //nolint:errcheck
	ws, err := websocket.Accept(c.Response(), c.Request(), nil) // same-origin unless no Origin is sent
	if err != nil {
		s.Logger.Warn("console: upgrade", "vm", id, "error", err)
		return nil // Accept has answered
	}
	defer ws.CloseNow() //nolint:errcheck
	ws.SetReadLimit(64 << 10)

	opened := time.Now()
	if err := s.VMs.ConsoleOpened(ctx, id, by); err != nil {
		ws.Close(websocket.StatusInternalError, "could not record the session")
		return nil
	}
	why := s.consoleSession(ctx, ws, hub)
	if err := s.VMs.ConsoleClosed(context.WithoutCancel(ctx), id, by, opened, why); err != nil {
		s.Logger.Warn("console: audit the end of a session", "vm", id, "error", err)
	}
	return nil
}

// consoleSession runs one viewer until it leaves, idles out, falls behind or the console
// goes; it returns why it ended (for the audit log) having told the viewer.
func (s *Server) consoleSession(ctx context.Context, ws *websocket.Conn, hub *console.Hub) string {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	viewer, hist := hub.Join()
	defer viewer.Leave()
	send := func(typ websocket.MessageType, b []byte) error {
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		return ws.Write(wctx, typ, b)
	}
	status := func() error {
		st := consoleControl{Type: "status", State: "connected"}
		if ok, _ := hub.Connected(); !ok {
			st.State, st.Message = "waiting", "the console is not connected (the VM is starting or stopping)"
		}
		b, _ := json.Marshal(st)
		return send(websocket.MessageText, b)
	}
	if status() != nil || (len(hist) > 0 && send(websocket.MessageBinary, hist) != nil) {
		return "the viewer went away"
	}

	var lastInput atomic.Int64
	lastInput.Store(time.Now().UnixNano())
	readErr := make(chan error, 1)
	go func() {
		for {
			typ, b, err := ws.Read(ctx)
			if err != nil {
				readErr <- err
				return
			}
			lastInput.Store(time.Now().UnixNano())
			switch typ {
			case websocket.MessageBinary:
				if _, err := hub.Write(b); err != nil {
					readErr <- err
					return
				}
			case websocket.MessageText:
				var m consoleControl
				if json.Unmarshal(b, &m) != nil || m.Type != "resize" || m.Cols < 1 || m.Rows < 1 || m.Cols > 1000 || m.Rows > 1000 {
					readErr <- errBadControl
					return
				}
			}
		}
	}()
	tick := time.NewTicker(min(s.ConsoleIdle/4, time.Minute))
	defer tick.Stop()
	_, changed := hub.Connected()
	for {
		select {
		case <-viewer.Ready():
			b, open := viewer.Take()
			if len(b) > 0 && send(websocket.MessageBinary, b) != nil {
				return "the viewer went away"
			}
			if !open {
				if viewer.Dropped() {
					ws.Close(websocket.StatusPolicyViolation, "this viewer fell too far behind the console")
					return "fell behind"
				}
				ws.Close(websocket.StatusGoingAway, "the console closed: the VM stopped or the manager is restarting")
				return "the console closed"
			}
		case <-changed:
			_, changed = hub.Connected()
			if status() != nil {
				return "the viewer went away"
			}
		case <-tick.C:
			if idle := time.Since(time.Unix(0, lastInput.Load())); idle > s.ConsoleIdle {
				ws.Close(websocket.StatusPolicyViolation, "idle for "+s.ConsoleIdle.String()+" (HEARTH_CONSOLE_IDLE)")
				return "idle for " + s.ConsoleIdle.String()
			}
		case err := <-readErr:
			switch {
			case errors.Is(err, errBadControl):
				ws.Close(websocket.StatusUnsupportedData, `text frames must be {"type":"resize","cols":N,"rows":N}`)
				return "sent a bad control message"
			case errors.Is(err, console.ErrNotConnected):
				ws.Close(websocket.StatusTryAgainLater, "the console is not connected")
				return "typed while the console was not connected"
			case websocket.CloseStatus(err) == websocket.StatusNormalClosure || websocket.CloseStatus(err) == websocket.StatusGoingAway:
				return "the viewer closed it"
			}
			return "the viewer went away"
		}
	}
}

var errBadControl = errors.New("bad control message")
