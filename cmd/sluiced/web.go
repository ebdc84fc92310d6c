package main

import (
	"embed"
	"io/fs"
)

// webdist is the demo web app (web/), built by `npm run build` in web/ and
// committed, so the binary serves it without Node.
//
//go:embed all:webdist
var webdist embed.FS

// webApp returns the demo web app for server.Config.Web.
func webApp() fs.FS {
	dist, err := fs.Sub(webdist, "webdist")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return dist
}
