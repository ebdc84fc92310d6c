// Package authz decides who may do what. Every RPC procedure has exactly one
// Policy (default deny: a procedure without one is refused and the server
// will not start), and every scope type has a ReadRule that decides who may
// stream or get its records. Checks are plain Go over facts handed in by the
// caller; authz runs no queries of its own.
package authz
