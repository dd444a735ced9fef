package web

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"hearth/app"
	"hearth/views/pages"
)

var codeStatus = map[string]int{
	app.EINVALID:      http.StatusBadRequest,
	app.EUNAUTHORIZED: http.StatusUnauthorized,
	app.EFORBIDDEN:    http.StatusForbidden,
	app.ENOTFOUND:     http.StatusNotFound,
	app.ECONFLICT:     http.StatusConflict,
	app.ETOOLARGE:     http.StatusRequestEntityTooLarge,
	app.EUNSUPPORTED:  http.StatusUnsupportedMediaType,
	app.ETHROTTLED:    http.StatusTooManyRequests,
	app.EUNAVAILABLE:  http.StatusServiceUnavailable,
	app.EFULL:         http.StatusInsufficientStorage,
	app.EINTERNAL:     http.StatusInternalServerError,
}

var statusCode = map[int]string{
	http.StatusBadRequest:            app.EINVALID,
	http.StatusUnauthorized:          app.EUNAUTHORIZED,
	http.StatusForbidden:             app.EFORBIDDEN,
	http.StatusNotFound:              app.ENOTFOUND,
	http.StatusMethodNotAllowed:      "method_not_allowed",
	http.StatusConflict:              app.ECONFLICT,
	http.StatusRequestEntityTooLarge: app.ETOOLARGE,
	http.StatusUnsupportedMediaType:  app.EUNSUPPORTED,
	http.StatusTooManyRequests:       app.ETHROTTLED,
}

// classify turns any error into a status, a code and a message a user may see.
func classify(err error) (status int, code, msg string) {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		code, ok := statusCode[he.Code]
		if !ok {
			code = app.EINTERNAL
		}
		msg := http.StatusText(he.Code)
		if s, ok := he.Message.(string); ok && he.Code < 500 {
			msg = s
		}
		return he.Code, code, strings.ToLower(msg[:1]) + msg[1:]
	}
	code = app.ErrorCode(err)
	if code == app.EINTERNAL && app.NoSpace(err) { // a file write into the full data dir
		full := app.FullDataDir()
		return codeStatus[full.Code], full.Code, full.Message
	}
	return codeStatus[code], code, app.ErrorMessage(err)
}

// refusal sorts a use case's error for a handler that shows refusals in place (a form, a
// panel): what the operator can act on comes back as the status and message to show there;
// an unknown VM or an internal error comes back as escalate, for handleError.
func refusal(err error) (status int, msg string, escalate error) {
	status, code, msg := classify(err)
	if code == app.EINTERNAL || code == app.ENOTFOUND {
		return 0, "", err
	}
	return status, msg, nil
}

// handleError is the one place errors become responses: JSON under /v1, an error fragment
// for HTMX requests, an error page otherwise. 5xx are logged as errors with the request id
// the user is shown; 4xx as warnings.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status, code, msg := classify(err)
	rid := c.Response().Header().Get(echo.HeaderXRequestID)
	level := slog.LevelWarn
	if status >= 500 {
		level = slog.LevelError
	}
	if code == app.EINTERNAL {
		msg = fmt.Sprintf("internal error (request id %s)", rid) // details stay in the log
	}
	s.Logger.Log(c.Request().Context(), level, "request failed", "request_id", rid,
		"method", c.Request().Method, "path", c.Request().URL.Path, "status", status, "error", err)
	if status == http.StatusUnauthorized && isAPI(c) {
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="hearth"`)
	}
	var werr error
	switch {
	case c.Request().Method == http.MethodHead:
		werr = c.NoContent(status)
	case isAPI(c):
		werr = c.JSON(status, errorBody{Error: errorDetail{Code: code, Message: msg, Fields: app.ErrorFields(err)}})
	case isHTMX(c):
		// htmx swaps nothing on 4xx/5xx by default; the page's error area shows this.
		c.Response().Header().Set("HX-Retarget", "#flash")
		c.Response().Header().Set("HX-Reswap", "innerHTML")
		werr = render(c, status, pages.Flash(pages.FlashError, msg))
	default:
		fields := app.ErrorFields(err)
		details := make([]string, 0, len(fields))
		for _, k := range slices.Sorted(maps.Keys(fields)) {
			details = append(details, k+" "+fields[k])
		}
		werr = render(c, status, pages.ErrorPage(s.layout(c, http.StatusText(status)), status, msg, details))
	}
	if werr != nil {
		s.Logger.Error("write error response", "request_id", rid, "error", werr)
	}
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string            `json:"code"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields,omitempty"`
}

func isAPI(c echo.Context) bool {
	p := c.Request().URL.Path
	return strings.HasPrefix(p, "/v1/") || p == "/metrics"
}

// isHTMX reports whether the request came from htmx for a partial; boosted navigations want
// whole pages.
func isHTMX(c echo.Context) bool {
	h := c.Request().Header
	return h.Get("HX-Request") == "true" && h.Get("HX-Boosted") != "true"
}
