package web

import (
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"hearth/app"
	"hearth/app/auth"
	"hearth/views/pages"
)

func (s *Server) loginPage(c echo.Context) error {
	if ck, err := c.Cookie(sessionCookie); err == nil {
		if _, err := s.Auth.SessionUser(c.Request().Context(), ck.Value); err == nil {
			return c.Redirect(http.StatusSeeOther, safeNext(c.QueryParam("next")))
		}
	}
	return renderOK(c, pages.LoginPage(s.layout(c, "Sign in"), pages.Login{Next: safeNext(c.QueryParam("next")), CSRF: csrfToken(c)}))
}

func (s *Server) login(c echo.Context) error {
	name, password := strings.TrimSpace(c.FormValue("name")), c.FormValue("password")
	next := safeNext(c.FormValue("next"))
	token, _, err := s.Auth.SignIn(c.Request().Context(), name, password, c.RealIP(), c.Request().UserAgent())
	if err != nil {
		status, _, msg := classify(err)
		if status >= 500 {
			return err
		}
		return render(c, status, pages.LoginPage(s.layout(c, "Sign in"), pages.Login{Name: name, Next: next, Error: msg, CSRF: csrfToken(c)}))
	}
	c.SetCookie(&http.Cookie{Name: sessionCookie, Value: token, Path: "/", HttpOnly: true,
		Secure: s.SecureCookies, SameSite: http.SameSiteLaxMode, MaxAge: int(auth.SessionTTL / time.Second)})
	return c.Redirect(http.StatusSeeOther, next)
}

func (s *Server) logout(c echo.Context) error {
	if ck, err := c.Cookie(sessionCookie); err == nil {
		by := app.Actor{Kind: app.ActorUser, Addr: c.RealIP()}
		if u, err := s.Auth.SessionUser(c.Request().Context(), ck.Value); err == nil {
			by.Name = u.Name
		}
		if err := s.Auth.SignOut(c.Request().Context(), ck.Value, by); err != nil {
			return err
		}
	}
	c.SetCookie(&http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true,
		Secure: s.SecureCookies, SameSite: http.SameSiteLaxMode, MaxAge: -1})
	return c.Redirect(http.StatusSeeOther, "/login")
}

// safeNext keeps post-sign-in redirects on this site: a local absolute path, nothing that a
// browser could read as another host. Browsers drop tabs and newlines from URLs and read a
// backslash as a slash, so "/<TAB>/evil", "/<backslash>evil" and "//evil" all lead
// elsewhere: any control character or backslash is refused, and what is left must parse
// as a path with no scheme or host.
func safeNext(next string) string {
	const home = "/vms"
	if len(next) > 2048 || !utf8.ValidString(next) || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") {
		return home
	}
	for _, r := range next {
		if r < 0x20 || r == 0x7f || r == '\\' || (r >= 0x80 && r < 0xa0) {
			return home
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" ||
		!strings.HasPrefix(u.Path, "/") || strings.HasPrefix(u.Path, "//") {
		return home
	}
	return next
}
