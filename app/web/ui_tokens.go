package web

import (
	"net/http"
	"regexp"
	"time"

	"github.com/labstack/echo/v4"

	"hearth/app"
	"hearth/views/pages"
)

// tokensPage is GET /tokens.
func (s *Server) tokensPage(c echo.Context) error {
	v := pages.TokensView{Revoked: c.QueryParam("revoked")}
	return s.renderTokens(c, http.StatusOK, v)
}

func (s *Server) renderTokens(c echo.Context, status int, v pages.TokensView) error {
	tokens, err := s.Auth.APITokens(c.Request().Context())
	if err != nil {
		return err
	}
	now := time.Now()
	for _, t := range tokens {
		r := pages.TokenRow{Name: t.Name, Created: ago(now, t.CreatedAt), CreatedAt: t.CreatedAt.Format(time.RFC3339), LastUsed: "never"}
		if !t.LastUsedAt.IsZero() {
			r.LastUsed, r.LastUsedAt = ago(now, t.LastUsedAt), t.LastUsedAt.Format(time.RFC3339)
		}
		v.Rows = append(v.Rows, r)
	}
	// The banner after a revoke names a token that is gone; anything else in ?revoked= is
	// not shown.
	if v.Revoked != "" && (tokenNamed(tokens, v.Revoked) || !tokenNameRE.MatchString(v.Revoked)) {
		v.Revoked = ""
	}
	v.CSRF = csrfToken(c)
	p := s.layout(c, "API tokens")
	p.Nav = "tokens"
	return render(c, status, pages.Tokens(p, v))
}

var tokenNameRE = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,31}$`)

func tokenNamed(ts []app.APIToken, name string) bool {
	for _, t := range ts {
		if t.Name == name {
			return true
		}
	}
	return false
}

// createToken is POST /tokens: the page again, with the new token shown once.
func (s *Server) createToken(c echo.Context) error {
	name := c.FormValue("name")
	token, err := s.Auth.CreateAPIToken(c.Request().Context(), name, actor(c))
	if err != nil {
		status, _, msg := classify(err)
		if status >= 500 {
			return err
		}
		if f := app.ErrorFields(err)["name"]; f != "" {
			msg = f
		}
		return s.renderTokens(c, status, pages.TokensView{Name: app.Clip(name, 64), Error: msg})
	}
	c.Response().Header().Set("Cache-Control", "no-store") // the token is on this page
	return s.renderTokens(c, http.StatusCreated, pages.TokensView{Created: token, NewName: name})
}

// revokeToken is POST /tokens/:name/revoke.
func (s *Server) revokeToken(c echo.Context) error {
	name := c.Param("name")
	if err := s.Auth.RevokeAPIToken(c.Request().Context(), name, actor(c)); err != nil {
		return err
	}
	return redirect(c, "/tokens?revoked="+name)
}
