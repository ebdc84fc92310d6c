package server

import (
	"io/fs"
	"net/http"
	"path"
	"strings"
)

// contentSecurityPolicy lets the web app load its own scripts, styles,
// images and fonts and call its own origin (connect-web), and nothing
// else: no inline script or style, no eval, no plugins, no <base>, no
// framing by any page. The favicon is a data: URL.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"font-src 'self'; connect-src 'self'; manifest-src 'self'; object-src 'none'; base-uri 'none'; " +
	"form-action 'self'; frame-ancestors 'none'"

// hstsMaxAge is the Strict-Transport-Security lifetime: one year.
const hstsMaxAge = "max-age=31536000"

// setWebHeaders sets the security headers of every response of the web
// app; HSTS only on a request that came over TLS.
func setWebHeaders(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	if r.TLS != nil {
		h.Set("Strict-Transport-Security", hstsMaxAge)
	}
}

// webHandler serves the web app dist (Config.Web; nil: nothing, 404): its
// files as they are, and index.html for any other GET of a page path
// (/color, /chat/<id>), so the app's routes survive a reload. Other methods, and missing assets or files
// with a static extension, get 404, never the page. Every response carries
// the security headers of setWebHeaders. App.Handler sends RPC paths
// (isRPCPath) to the services, everything else here.
func webHandler(dist fs.FS) http.Handler {
	if dist == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			setWebHeaders(w, r)
			http.NotFound(w, r)
		})
	}
	files := http.FileServerFS(dist)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setWebHeaders(w, r)
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.NotFound(w, r)
			return
		}
		name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
		if name != "" && name != "index.html" {
			if st, err := fs.Stat(dist, name); err == nil && !st.IsDir() {
				if strings.HasPrefix(name, "assets/") {
					// Vite names assets by content hash.
					w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
				}
				files.ServeHTTP(w, r)
				return
			}
			if strings.HasPrefix(name, "assets/") || staticExt[path.Ext(name)] {
				http.NotFound(w, r)
				return
			}
		}
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, dist, "index.html")
	})
}

// staticExt are the extensions of files, never of pages: a missing one is
// a 404, not the app. (Page paths may contain dots: channel ids do.)
var staticExt = map[string]bool{
	".js": true, ".mjs": true, ".css": true, ".map": true, ".json": true, ".txt": true,
	".ico": true, ".png": true, ".jpg": true, ".svg": true, ".webp": true, ".woff2": true,
	".webmanifest": true, ".html": true,
}

// isRPCPath reports whether a cleaned path without its leading slash names
// an RPC: a first segment with a dot (a qualified service name) and more.
func isRPCPath(name string) bool {
	svc, _, ok := strings.Cut(name, "/")
	return ok && strings.Contains(svc, ".")
}
