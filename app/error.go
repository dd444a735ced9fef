// Package app holds Hearth's domain types and its one error type. Everything else in the
// manager depends on this package; it depends on nothing of ours.
package app

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"syscall"
)

// Error codes. Each maps to one HTTP status at the edge (see web) and tells callers what
// kind of failure happened without their parsing messages.
const (
	EINVALID      = "invalid"              // input failed validation
	ENOTFOUND     = "not_found"            // the thing does not exist
	ECONFLICT     = "conflict"             // the request clashes with current state (duplicate name, …)
	EUNAUTHORIZED = "unauthorized"         // no or unknown credentials
	EFORBIDDEN    = "forbidden"            // credentials known but not allowed to do this
	ETOOLARGE     = "too_large"            // request body over its limit
	EUNSUPPORTED  = "unsupported"          // unsupported media type
	ETHROTTLED    = "too_many"             // too many attempts; try later
	EUNAVAILABLE  = "unavailable"          // this manager cannot do it as built or configured
	EFULL         = "insufficient_storage" // the disk under the data dir or the database is full
	EINTERNAL     = "internal"             // anything else; details go to the log, not the user
)

// Error is an error a user may see: its Message is written for operators, its Code for programs.
// Errors that are not *Error are internal and are shown only as "internal error".
type Error struct {
	Code    string
	Message string
	// Fields, when set, says what is wrong with each named input field, so forms can show
	// each message beside its field. Message then summarises them.
	Fields map[string]string
}

func (e *Error) Error() string { return fmt.Sprintf("hearth: %s: %s", e.Code, e.Message) }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL for any other
// error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the user-facing message of err: the *Error's message, or
// "internal error" for anything else, so internals never leak to users.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// Invalid returns an EINVALID error for the given field messages, or nil when there are none.
// Its message lists every field's message, in field order, for API clients.
func Invalid(fields map[string]string) error {
	if len(fields) == 0 {
		return nil
	}
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = k + ": " + fields[k]
	}
	return &Error{Code: EINVALID, Message: strings.Join(parts, "; "), Fields: fields}
}

// ErrorFields returns the per-field messages of err, if it carries any.
func ErrorFields(err error) map[string]string {
	var e *Error
	if errors.As(err, &e) {
		return e.Fields
	}
	return nil
}

// NoSpace reports whether err says a disk is full (ENOSPC) or a quota is used up (EDQUOT).
func NoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// FullDataDir is the error a write into a full data dir becomes.
func FullDataDir() *Error {
	return Errorf(EFULL, "the data directory is full: free space on its filesystem and try again (nothing was written)")
}
