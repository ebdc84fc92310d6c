package server

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// ServeDebug serves the Go profiler on addr, on a listener of its own so
// it is never reachable through the API port. It returns a function that
// stops it and the address it listens on.
func ServeDebug(addr string, log *slog.Logger) (func(), net.Addr, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return ServeAside("profiler", addr, mux, log)
}

// ServeAside serves h on addr, a listener of its own apart from the API
// port, and warns when it is reachable beyond loopback (h has no
// authentication). It returns a function that stops it and the address it
// listens on.
func ServeAside(what, addr string, h http.Handler, log *slog.Logger) (func(), net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("%s listen: %w", what, err)
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
		log.Warn(what+" listens beyond loopback; it has no authentication", "addr", ln.Addr().String())
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info(what+" serving", "addr", ln.Addr().String())
	return func() { _ = srv.Close() }, ln.Addr(), nil
}
