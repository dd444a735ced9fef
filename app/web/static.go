package web

import (
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"

	"github.com/labstack/echo/v4"

	"hearth/app"
	"hearth/static"
)

// staticRoutes serves embedded files at /static/{version}/{name}. A URL with the current
// version never changes content, so it is cached for a year; any other version (an old page
// still open after an upgrade) gets the current file, uncached.
func (s *Server) staticRoutes() {
	s.echo.GET("/favicon.ico", func(c echo.Context) error {
		return c.Redirect(http.StatusMovedPermanently, static.Path("img/favicon.svg"))
	})
	s.echo.GET("/static/:version/*", func(c echo.Context) error {
		name := path.Clean(c.Param("*"))
		b, err := fs.ReadFile(static.FS, name)
		if err != nil || strings.HasPrefix(name, "src/") {
			return app.Errorf(app.ENOTFOUND, "no such file")
		}
		h := c.Response().Header()
		if c.Param("version") == static.Version() {
			h.Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			h.Set("Cache-Control", "no-cache")
		}
		ct := mime.TypeByExtension(path.Ext(name))
		if ct == "" {
			ct = "application/octet-stream"
		}
		return c.Blob(http.StatusOK, ct, b)
	})
}
