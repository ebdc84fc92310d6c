// Package proto holds the .proto contracts of Sluice. `go generate ./proto`
// regenerates gen/ from them (see scripts/generate).
package proto

//go:generate ../scripts/generate
