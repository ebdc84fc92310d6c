package auth

import "testing"

// TestSameOrigin is the Origin rule of cookie sessions: the Origin must
// name the server the request reached (its Host), over https, or over
// plain http on a loopback host only.
func TestSameOrigin(t *testing.T) {
	for _, tc := range []struct {
		origin, host string
		tls          bool
		ok, secure   bool
	}{
		{"https://app.example.com", "app.example.com", true, true, true},
		{"https://app.example.com", "app.example.com", false, true, true}, // TLS ended by a proxy
		{"https://app.example.com", "app.example.com:443", false, true, true},
		{"https://app.example.com:8443", "app.example.com:8443", true, true, true},
		{"https://APP.example.com", "app.example.com", true, true, true},
		{"http://localhost:8080", "localhost:8080", false, true, false},
		{"http://127.0.0.1:8080", "127.0.0.1:8080", false, true, false},
		{"http://[::1]:8080", "[::1]:8080", false, true, false},
		{"http://app.localhost:5173", "app.localhost:5173", false, true, false},

		{"", "app.example.com", true, false, false},
		{"null", "app.example.com", true, false, false},
		{"https://evil.example", "app.example.com", true, false, false},
		{"https://app.example.com:8443", "app.example.com", true, false, false},
		{"https://sub.app.example.com", "app.example.com", true, false, false},
		{"http://app.example.com", "app.example.com", false, false, false}, // plain http off loopback
		{"http://localhost:8080", "localhost:8080", true, false, false},    // http page, TLS request
		{"http://localhost:8080", "localhost:9090", false, false, false},
		{"http://localhost:8080", "127.0.0.1:8080", false, false, false},
		{"ws://localhost:8080", "localhost:8080", false, false, false},
		{"https://user@app.example.com", "app.example.com", true, false, false},
		{"https://app.example.com/path", "app.example.com", true, false, false},
		{"https://app.example.com", "", true, false, false},
	} {
		ok, secure := sameOrigin(tc.origin, tc.host, tc.tls)
		if ok != tc.ok || (ok && secure != tc.secure) {
			t.Errorf("sameOrigin(%q, %q, tls=%v) = %v, %v; want %v, %v", tc.origin, tc.host, tc.tls, ok, secure, tc.ok, tc.secure)
		}
	}
}
