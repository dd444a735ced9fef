// Package components holds presentational pieces the pages share: badges, form fields,
// charts (Line.Path scales points into an SVG box). They know nothing of the domain.
package components
