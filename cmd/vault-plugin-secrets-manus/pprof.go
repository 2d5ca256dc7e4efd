package main

import (
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
)

// profilerAddrEnv names the variable that turns on a pprof listener for
// benchmarking (scripts/bench-vault.sh passes it with `vault plugin
// register -env`). It is off unless set, and only loopback addresses are
// accepted. The listener has no authentication: every local user of the
// host can read its goroutine dumps and profiles, so it is a debugging aid
// (SECURITY.md), and starting it is logged as a warning.
const profilerAddrEnv = "MANUS_PLUGIN_PPROF_ADDR"

func startProfilerIfAsked() {
	addr := os.Getenv(profilerAddrEnv)
	if addr == "" {
		return
	}
	logger := hclog.New(&hclog.LoggerOptions{})
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		logger.Warn("ignoring " + profilerAddrEnv + ": it must be a loopback IP and port")
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	server := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	logger.Warn("pprof listener on " + addr + " (set by " + profilerAddrEnv + "): it serves goroutine dumps and profiles to every local user of this host, without authentication; for debugging only")
	go func() { _ = server.ListenAndServe() }()
}
