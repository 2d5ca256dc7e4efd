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
// accepted.
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
	go func() { _ = server.ListenAndServe() }()
}
