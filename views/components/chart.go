package components

import (
	"fmt"
	"strings"
	"time"
)

// Point is one value at one time on a line chart; Missing breaks the line there.
type Point struct {
	At      time.Time
	Value   float64
	Missing bool
}

// Line is a series to draw: time from Start over Window on x, Value against Max on y
// (values above Max are drawn at the top). A step longer than MaxGap breaks the line, as a
// Missing point does; a zero MaxGap breaks it only there.
type Line struct {
	Points []Point
	Start  time.Time
	Window time.Duration
	Max    float64
	MaxGap time.Duration
}

// Path is the line's SVG path data in a w×h box (y grows downwards), "" when there is
// nothing to draw.
func (l Line) Path(w, h float64) string {
	if l.Window <= 0 || l.Max <= 0 {
		return ""
	}
	var b strings.Builder
	var prev time.Time
	for _, p := range l.Points {
		if p.Missing {
			prev = time.Time{}
			continue
		}
		x := w * p.At.Sub(l.Start).Seconds() / l.Window.Seconds()
		y := h - h*min(p.Value, l.Max)/l.Max
		cmd := "L"
		if prev.IsZero() || (l.MaxGap > 0 && p.At.Sub(prev) > l.MaxGap) {
			cmd = "M"
		}
		fmt.Fprintf(&b, "%s%.1f %.1f ", cmd, x, y)
		prev = p.At
	}
	return strings.TrimSpace(b.String())
}
