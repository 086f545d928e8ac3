//go:build pprof

package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
)

// A build for profiling (go build -tags pprof, as `bench/e2e -profile`
// makes one) serves net/http/pprof on the loopback address in
// PORTVAKT_PPROF. A shipped build has none of this: profiles show what
// the daemon's goroutines hold, so they are no operator's interface.
func init() {
	addr := os.Getenv("PORTVAKT_PPROF")
	if addr == "" {
		return
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		fmt.Fprintf(os.Stderr, "PORTVAKT_PPROF=%s: give a loopback address and port, such as 127.0.0.1:6060\n", addr)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "PORTVAKT_PPROF: %v\n", err)
		os.Exit(2)
	}
	// The heap is sampled at the runtime's rate: a finer one costs each
	// allocation a stack walk, which the CPU profiles would then show.
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	go func() { _ = http.Serve(ln, mux) }()
}
