package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseBool reads a yes/no setting: 1/0, true/false, yes/no, on/off, in any case. Anything
// else is an error that lists what is accepted, rather than a silent "no".
func ParseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a yes/no value (use 1/0, true/false, yes/no or on/off)", s)
}

// ParseDuration reads a duration with its unit ("5s", "2m"); a bare number is refused with
// an example, since "5" could mean seconds or nanoseconds.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return 0, fmt.Errorf("%q needs a unit, e.g. %ss or %sm", s, s, s)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (e.g. 5s, 2m, 1h30m)", s)
	}
	return d, nil
}

// boolFlag is a flag.Value for yes/no settings, --name alone meaning yes.
type boolFlag struct{ v *bool }

func (b boolFlag) String() string {
	if b.v == nil {
		return "false"
	}
	return strconv.FormatBool(*b.v)
}

func (b boolFlag) Set(s string) error {
	v, err := ParseBool(s)
	if err == nil {
		*b.v = v
	}
	return err
}

func (b boolFlag) IsBoolFlag() bool { return true }

// durationFlag is a flag.Value for durations, read with ParseDuration.
type durationFlag struct{ v *time.Duration }

func (d durationFlag) String() string {
	if d.v == nil {
		return "0s"
	}
	return d.v.String()
}

func (d durationFlag) Set(s string) error {
	v, err := ParseDuration(s)
	if err == nil {
		*d.v = v
	}
	return err
}
