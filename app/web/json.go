package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/labstack/echo/v4"

	"hearth/app"
)

// decodeJSON reads exactly one JSON object into dst, strictly: the body must be
// application/json, at most MaxBody bytes, with no unknown fields and nothing after it.
func decodeJSON(c echo.Context, dst any) error {
	mt, _, err := mime.ParseMediaType(c.Request().Header.Get(echo.HeaderContentType))
	if err != nil || mt != echo.MIMEApplicationJSON {
		return app.Errorf(app.EUNSUPPORTED, "request body must be JSON (Content-Type: application/json)")
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return app.Errorf(app.ETOOLARGE, "request body is larger than %d KiB", MaxBody>>10)
		}
		return app.Errorf(app.EINVALID, "could not read request body")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return app.Errorf(app.EINVALID, "request body is empty; send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return app.Errorf(app.EINVALID, "request body has data after the JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return app.Errorf(app.EINVALID, "request body has data after the JSON object")
	}
	return nil
}

// jsonError explains a decoding failure in terms of the request, not of Go types.
func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return app.Errorf(app.EINVALID, "malformed JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return app.Errorf(app.EINVALID, "request body must be a JSON object, not %s", typ.Value)
		}
		return app.Errorf(app.EINVALID, "field %s must be %s, not %s", typ.Field, jsonKind(typ.Type.Kind().String()), typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return app.Errorf(app.EINVALID, "malformed JSON: unexpected end of body")
	}
	// DisallowUnknownFields reports `json: unknown field "x"`.
	var msg = err.Error()
	const p = "json: unknown field "
	if len(msg) > len(p) && msg[:len(p)] == p {
		return app.Errorf(app.EINVALID, "unknown field %s", msg[len(p):])
	}
	return app.Errorf(app.EINVALID, "malformed JSON: %s", msg)
}

func jsonKind(k string) string {
	switch k {
	case "int", "int64", "int32", "uint", "uint64", "float64":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "ptr":
		return "a value of the right type"
	}
	return fmt.Sprintf("a %s", k)
}
