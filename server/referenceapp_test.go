package server

import (
	"io/fs"
	"os"
)

// devUsers and webdist are the reference app's development users and web
// build, as cmd/sluiced embeds them: the scenario tests serve what
// `sluiced serve` serves.
var (
	devUsers = mustRead("../cmd/sluiced/devusers.yml")
	webdist  = readFS{os.DirFS("../cmd/sluiced")}
)

// webRoot is webdist's root, for Config.Web.
func webRoot() fs.FS {
	root, err := fs.Sub(webdist, "webdist")
	if err != nil {
		panic(err)
	}
	return root
}

func mustRead(name string) []byte {
	b, err := os.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return b
}

// readFS is an fs.FS with embed.FS's ReadFile and ReadDir methods.
type readFS struct{ fs.FS }

func (f readFS) ReadFile(name string) ([]byte, error) { return fs.ReadFile(f.FS, name) }

func (f readFS) ReadDir(name string) ([]fs.DirEntry, error) { return fs.ReadDir(f.FS, name) }
