// Package edge is the RPC edge shared by every service: the one place where
// errors become Connect codes, request validation with field violations,
// and the handler options every service is mounted with (size limits,
// compression threshold, interceptors, codecs that refuse malformed bodies
// with a client's message, panic recovery).
package edge
