package components

import (
	"testing"
	"time"
)

func TestLinePath(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	l := Line{Start: t0, Window: 100 * time.Second, Max: 100, MaxGap: 5 * time.Second, Points: []Point{
		{At: at(0), Value: 0}, {At: at(1), Value: 50}, {At: at(2), Missing: true}, {At: at(3), Value: 100},
		{At: at(4), Value: 250}, {At: at(20), Value: 25}, // a step past MaxGap breaks the line
	}}
	if got, want := l.Path(600, 120), "M0.0 120.0 L6.0 60.0 M18.0 0.0 L24.0 0.0 M120.0 90.0"; got != want {
		t.Errorf("Path = %q, want %q", got, want)
	}
	l.MaxGap = 0 // breaks only where a point is missing
	if got, want := l.Path(600, 120), "M0.0 120.0 L6.0 60.0 M18.0 0.0 L24.0 0.0 L120.0 90.0"; got != want {
		t.Errorf("Path without gaps = %q, want %q", got, want)
	}
	if (Line{Points: l.Points}).Path(600, 120) != "" || (Line{Start: t0, Window: time.Minute, Max: 100}).Path(1, 1) != "" {
		t.Error("an empty or unscaled line draws something")
	}
}
