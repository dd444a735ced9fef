// Package layouts is the page frame every full page renders into: head, navigation, the
// flash area, and the CSRF token htmx requests carry.
package layouts
