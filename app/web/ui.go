package web

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"hearth/app"
	"hearth/views/layouts"
)

const sessionCookie = "hearth_session"

// MaxForm bounds a UI form's body (the largest holds a pasted private key); MaxLoginForm
// the sign-in form's, which holds a name and a password.
const (
	MaxForm      = 64 << 10
	MaxLoginForm = 8 << 10
)

func (s *Server) uiRoutes() {
	ui := s.echo.Group("")
	ui.Use(limitForm)
	ui.Use(middleware.CSRFWithConfig(middleware.CSRFConfig{
		// The query is for the archive upload, whose multipart body must not be read before
		// its handler streams it (a browser passes by fetch metadata without either).
		TokenLookup:    "header:X-CSRF-Token,query:_csrf,form:_csrf",
		CookieName:     "hearth_csrf",
		CookiePath:     "/",
		CookieHTTPOnly: true,
		CookieSecure:   s.SecureCookies,
		CookieSameSite: http.SameSiteStrictMode,
		ContextKey:     "csrf",
		Skipper:        func(c echo.Context) bool { return isAPI(c) || strings.HasPrefix(c.Request().URL.Path, "/static/") },
	}))
	ui.GET("/login", s.loginPage)
	ui.POST("/login", s.login)
	ui.POST("/logout", s.logout)

	in := ui.Group("", s.signedIn)
	in.GET("/", func(c echo.Context) error { return c.Redirect(http.StatusSeeOther, "/vms") })
	in.GET("/dashboard", s.dashboardPage)
	in.GET("/dashboard/panel", s.dashboardPanel)
	in.GET("/vms", s.vmsPage)
	in.GET("/vms/list", s.vmListPart)
	in.GET("/vms/new", s.newVMPage)
	in.POST("/vms", s.createVM)
	in.GET("/vms/:id", s.vmPage)
	in.GET("/vms/:id/edit", s.editVMPage)
	in.POST("/vms/:id", s.updateVM)
	in.POST("/vms/:id/delete", s.deleteVM)
	in.GET("/vms/:id/activity", s.vmActivity)
	in.GET("/vms/:id/status", s.vmStatus)
	in.GET("/vms/:id/metrics", s.vmMetrics)
	in.GET("/vms/:id/console/ws", s.uiConsole)
	in.POST("/vms/:id/start", s.uiLifecycle(app.ActionStart))
	in.POST("/vms/:id/stop", s.uiLifecycle(app.ActionStop))
	in.POST("/vms/:id/restart", s.uiLifecycle(app.ActionRestart))
	in.POST("/vms/:id/pause", s.uiLifecycle(app.ActionPause))
	in.POST("/vms/:id/resume", s.uiLifecycle(app.ActionResume))
	in.GET("/vms/:id/snapshots", s.vmSnapshots)
	in.POST("/vms/:id/snapshots", s.uiSnapshotOp(s.uiTakeSnapshot))
	in.POST("/vms/:id/snapshots/:name/restore", s.uiSnapshotOp(s.uiRestoreSnapshot))
	in.POST("/vms/:id/snapshots/:name/delete", s.uiSnapshotOp(s.uiDeleteSnapshot))
	in.GET("/vms/:id/seed.iso", s.onOwner(s.seedISO))
	in.GET("/vms/:id/agent/install", s.installStatus)
	in.POST("/vms/:id/agent/install", s.startInstall)
	in.GET("/vms/:id/guest-ip", s.guestIPValue)
	in.POST("/vms/:id/guest-ip", s.setGuestIP)
	in.GET("/nodes", s.nodesPage)
	in.GET("/images", s.imagesPage)
	in.POST("/images", s.createImage)
	in.POST("/images/oci", s.createOCIImage)
	in.GET("/images/:name", s.imagePage)
	in.GET("/images/:name/progress", s.imageProgressPanel)
	in.POST("/images/:name/delete", s.deleteImage)
	in.GET("/tokens", s.tokensPage)
	in.POST("/tokens", s.createToken)
	in.POST("/tokens/:name/revoke", s.revokeToken)
}

// limitForm reads a state-changing UI request's form within its bound, before anything
// else (the CSRF check) reads it: Go would otherwise accept 10 MB of url-encoded form, and
// echo ignores the error of a form that does not parse.
func limitForm(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.Method == http.MethodGet || r.Method == http.MethodHead || isAPI(c) || r.URL.Path == ociUploadPath {
			return next(c) // the upload's handler bounds what it reads itself
		}
		limit := int64(MaxForm)
		if r.URL.Path == "/login" {
			limit = MaxLoginForm
		}
		r.Body = http.MaxBytesReader(c.Response(), r.Body, limit)
		if err := r.ParseForm(); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				return app.Errorf(app.ETOOLARGE, "the form is larger than %d KiB", limit>>10)
			}
			return app.Errorf(app.EINVALID, "the form could not be read: %s", err)
		}
		return next(c)
	}
}

// signedIn lets through requests with a live session and sends the rest to sign in: a
// redirect for page loads, HX-Redirect for htmx requests (which would otherwise swap the
// sign-in page into a fragment).
func (s *Server) signedIn(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if ck, err := c.Cookie(sessionCookie); err == nil {
			user, err := s.Auth.SessionUser(c.Request().Context(), ck.Value)
			if err == nil {
				c.Set(keyUser, user)
				c.Set(keyActor, app.Actor{Kind: app.ActorUser, Name: user.Name, Addr: c.RealIP()})
				return next(c)
			}
			if app.ErrorCode(err) != app.EUNAUTHORIZED {
				return err
			}
		}
		to := "/login"
		if r := c.Request(); r.Method == http.MethodGet && r.URL.Path != "/" {
			to += "?next=" + url.QueryEscape(r.URL.RequestURI())
		}
		if isHTMX(c) {
			c.Response().Header().Set("HX-Redirect", to)
			return c.NoContent(http.StatusUnauthorized)
		}
		return c.Redirect(http.StatusSeeOther, to)
	}
}

// layout is what every full page needs: title, user, CSRF token.
func (s *Server) layout(c echo.Context, title string) layouts.Page {
	p := layouts.Page{Title: title, CSRF: csrfToken(c), Nav: "vms"}
	if u, ok := c.Get(keyUser).(*app.User); ok {
		p.User = u.Name
	}
	return p
}

func csrfToken(c echo.Context) string {
	t, _ := c.Get("csrf").(string)
	return t
}

// redirect sends the browser to path after a form post: a 303 for plain forms, HX-Redirect
// for htmx ones.
func redirect(c echo.Context, path string) error {
	if isHTMX(c) {
		c.Response().Header().Set("HX-Redirect", path)
		return c.NoContent(http.StatusOK)
	}
	return c.Redirect(http.StatusSeeOther, path)
}
