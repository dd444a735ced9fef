package server

import (
	"net/http"
	"strconv"
	"strings"
)

// wantsPrometheus decides the format of /metrics: ?format=prometheus or ?format=json wins;
// otherwise the Accept header, where Prometheus text (text/plain or OpenMetrics) is chosen
// when the client prefers it to JSON. Browsers and curl (no Accept, or */*) get JSON.
func wantsPrometheus(r *http.Request) bool {
	switch r.URL.Query().Get("format") {
	case "prometheus", "openmetrics", "text":
		return true
	case "json":
		return false
	}
	text, json := acceptQ(r.Header.Get("Accept"))
	return text > json
}

// acceptQ returns the best quality the Accept header gives to Prometheus text and to JSON.
// Wildcards count for both, so only an explicit preference moves away from JSON.
func acceptQ(accept string) (text, json float64) {
	if strings.TrimSpace(accept) == "" {
		return 0, 1
	}
	parts := strings.Split(accept, ",")
	if len(parts) > 32 { // a pathological header gets the default
		return 0, 1
	}
	for _, part := range parts {
		params := strings.Split(part, ";")
		mt := strings.ToLower(strings.TrimSpace(params[0]))
		q := 1.0
		for _, p := range params[1:] {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.TrimSpace(k) == "q" {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && f >= 0 && f <= 1 {
					q = f
				} else {
					q = 0
				}
			}
		}
		switch mt {
		case "text/plain", "application/openmetrics-text":
			text = max(text, q)
		case "application/json":
			json = max(json, q)
		case "*/*", "text/*", "application/*":
			if mt != "application/*" {
				text = max(text, q*0.999) // a wildcard is a weaker claim than a name
			}
			if mt != "text/*" {
				json = max(json, q)
			}
		}
	}
	return text, json
}
