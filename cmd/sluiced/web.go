package main

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

// webdist is the demo web app (web/), built by `npm run build` in web/ and
// committed, so the binary serves it without Node.
//
//go:embed all:webdist
var webdist embed.FS

// webHandler serves the embedded web app: its files as they are, and
// index.html for any other GET of a page path (/color, /chat/<id>), so the
// app's routes survive a reload. Other methods, and missing assets or files
// with a static extension, get 404, never the page. App.Handler sends RPC
// paths (isRPCPath) to the services, everything else here.
func webHandler() http.Handler {
	dist, err := fs.Sub(webdist, "webdist")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	files := http.FileServerFS(dist)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
