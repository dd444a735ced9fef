package web

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/labstack/echo/v4"
)

func requestID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// logRequests writes one line per request with its request id. Errors are logged by
// handleError, which knows their status; this logs the outcome.
func (s *Server) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err) // render it now so the status below is the one sent
		}
		r := c.Request()
		s.Logger.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("request_id", c.Response().Header().Get(echo.HeaderXRequestID)),
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", c.Response().Status), slog.String("remote", c.RealIP()),
			slog.Duration("duration", time.Since(start)))
		return nil
	}
}

func (s *Server) logPanic(c echo.Context, err error, stack []byte) error {
	s.Logger.Error("panic in handler", "request_id", c.Response().Header().Get(echo.HeaderXRequestID),
		"path", c.Request().URL.Path, "error", err, "stack", string(stack))
	return err
}

// securityHeaders keeps the UI out of frames, stops MIME sniffing, and restricts scripts
// and styles to our own embedded files.
func securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Content-Security-Policy", csp("'self'"))
		return next(c)
	}
}

// csp is the Content-Security-Policy with the given style sources.
func csp(styles string) string {
	return "default-src 'self'; img-src 'self' data:; style-src " + styles + "; " +
		"script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
}

// terminalCSP lets a page run xterm.js, which writes its theme and cell sizes into
// <style> elements it makes: inline styles are allowed there, scripts stay our own files.
func terminalCSP(c echo.Context) {
	c.Response().Header().Set("Content-Security-Policy", csp("'self' 'unsafe-inline'"))
}
