package app

import (
	"fmt"
	"time"
)

// GuestIPState is the guest-IP part of a VM: the address in effect (with who set it and
// when), and what the guest itself registered last, which is kept beneath an operator's
// manual value.
type GuestIPState struct {
	IP        string // "" when unknown
	Source    GuestIPSource
	UpdatedAt time.Time

	RegisteredIP     string // "" when the guest has registered nothing (or it was forgotten)
	RegisteredSource GuestIPSource
	RegisteredAt     time.Time
}

// GuestIPChange is a request to set (IP != "") or clear (IP == "") the guest IP, by a
// guest (SourceCallback, SourceAgent) or an operator (SourceManual), at a time.
type GuestIPChange struct {
	IP     string
	Source GuestIPSource
	At     time.Time
}

// Apply is the guest-IP rule. What the guest registers is always remembered, but an
// operator's manual value stays in effect over it; clearing a manual value falls back to
// what the guest registered last, and clearing any other value forgets it. It returns the
// new state and a note for the audit log saying which of these happened ("" when the
// change simply took effect).
func (s GuestIPState) Apply(c GuestIPChange) (GuestIPState, string) {
	manual := s.Source == SourceManual && s.IP != ""
	next := s
	set := func(ip string, src GuestIPSource, at time.Time) {
		next.IP, next.Source, next.UpdatedAt = ip, src, at
		if ip == "" {
			next.Source, next.UpdatedAt = "", time.Time{}
		}
	}
	forget := func() { next.RegisteredIP, next.RegisteredSource, next.RegisteredAt = "", "", time.Time{} }
	switch {
	case c.Source != SourceManual: // the guest speaks
		if c.IP == "" {
			forget()
		} else {
			next.RegisteredIP, next.RegisteredSource, next.RegisteredAt = c.IP, c.Source, c.At
		}
		if manual {
			return next, fmt.Sprintf("; the manual %s stays in effect", s.IP)
		}
		set(c.IP, c.Source, c.At)
	case c.IP != "": // an operator sets a value
		set(c.IP, SourceManual, c.At)
	case manual && s.RegisteredIP != "": // an operator clears an override
		set(s.RegisteredIP, s.RegisteredSource, s.RegisteredAt)
		return next, fmt.Sprintf("; back to %s registered by the guest (%s)", s.RegisteredIP, s.RegisteredSource)
	default: // an operator clears the guest's value, or an override with nothing beneath
		set("", "", time.Time{})
		forget()
	}
	return next, ""
}

// GuestIPState returns the VM's guest-IP state.
func (vm *VM) GuestIPState() GuestIPState {
	return GuestIPState{IP: vm.GuestIP, Source: vm.GuestIPSource, UpdatedAt: vm.GuestIPUpdatedAt,
		RegisteredIP: vm.RegisteredIP, RegisteredSource: vm.RegisteredIPSource, RegisteredAt: vm.RegisteredIPAt}
}

// SetGuestIPState puts s into the VM.
func (vm *VM) SetGuestIPState(s GuestIPState) {
	vm.GuestIP, vm.GuestIPSource, vm.GuestIPUpdatedAt = s.IP, s.Source, s.UpdatedAt
	vm.RegisteredIP, vm.RegisteredIPSource, vm.RegisteredIPAt = s.RegisteredIP, s.RegisteredSource, s.RegisteredAt
}
