package edge

import (
	"net/url"
	"strings"
)

// isHTTPURL reports whether s is an absolute http or https URL with a host
// and no user info or control characters.
func isHTTPURL(s string) bool {
	if s == "" || strings.ContainsAny(s, " \t\r\n") {
		return false
	}
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return false
	}
	if u.Host == "" || u.Hostname() == "" || u.User != nil || u.Opaque != "" {
		return false
	}
	return true
}
