package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"syscall"
	"time"

	"hearth/guest/api"
)

// earliest is the earliest time PUT /clock accepts: a manager's clock before it is wrong.
var earliest = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// setClock steps CLOCK_REALTIME; a variable so tests can see what would be set.
var setClock = func(t time.Time) error {
	tv := syscall.NsecToTimeval(t.UnixNano())
	return syscall.Settimeofday(&tv)
}

// clock is PUT /clock: after a restore from a snapshot the guest's clock is as far behind
// as the snapshot is old; the manager sends its time and the agent steps the clock to it.
// Only an agent with a token takes it (setting the clock is a write, not a read).
func (h *handler) clock(w http.ResponseWriter, r *http.Request) {
	if h.opts.Token == "" {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "this agent has no token, so it does not let anyone set its clock"})
		return
	}
	if !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="hearth-agent"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong bearer token"})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1024+1))
	if err != nil || len(body) > 1024 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "the body must be a small JSON object"})
		return
	}
	var c api.Clock
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil || dec.More() {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": `the body must be {"unix_nano": <the time in nanoseconds since 1970>}`})
		return
	}
	t := time.Unix(0, c.UnixNano)
	if t.Before(earliest) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unix_nano is before 2024: refusing to set the clock to it"})
		return
	}
	res, err := step(t)
	if errors.Is(err, errAhead) {
		writeJSON(w, http.StatusConflict, map[string]any{"error": err.Error(), "offset_seconds": res.Seconds})
		return
	}
	if err != nil {
		h.opts.Logger.Warn("set the clock", "error", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "cannot set the clock: " + err.Error()})
		return
	}
	if res.Stepped {
		h.opts.Logger.Info("clock stepped to the manager's time", "offset_seconds", res.Seconds)
	}
	writeJSON(w, http.StatusOK, res)
}

// errAhead: the guest's clock is ahead of the manager's. A restored guest is always
// behind; stepping a clock back (replaying time-limited tokens, certificates) is not
// something this endpoint does.
var errAhead = errors.New("the guest's clock is ahead of the manager's; the agent only steps it forward")

// step sets the clock forward to t when it is behind by more than the tolerance.
func step(t time.Time) (api.ClockResult, error) {
	off := t.Sub(time.Now()).Seconds()
	res := api.ClockResult{Seconds: math.Round(off*1000) / 1000}
	if math.Abs(off) <= api.ClockTolerance {
		return res, nil
	}
	if off < 0 {
		return res, errAhead
	}
	if err := setClock(t); err != nil {
		if errors.Is(err, syscall.EPERM) {
			return res, errors.New("not permitted (the agent must run as root or with CAP_SYS_TIME)")
		}
		return res, err
	}
	res.Stepped = true
	return res, nil
}
