// Command manus-loadtest measures reads through a real Vault server: N
// concurrent clients read each given path for a fixed time, and it reports
// reads per second, p50/p99 latency, the ratio of the first path to each
// later one, the peak RSS of the plugin and Vault processes, and the leases
// Vault holds afterwards under each -lease-prefix. With -cold-mount it also
// times a mount from `secrets enable` to the first served token. With
// -node, a path written NODE:path is read through that node of a cluster;
// with -standin, the mints the Manus stand-in saw during each measured run
// are reported with the path. Failed reads are counted and the first
// failure of each path is shown; they never stop the run.
//
// scripts/bench-vault.sh (make bench-vault) starts a Vault on Raft storage
// (or a dev Vault) and the Manus stand-in and runs this against leased and
// non-leased token reads, a KV v2 secret and manus/config;
// scripts/bench-openbao.sh (make bench-openbao) runs it against token reads
// through a standby and through the active node of an OpenBao cluster. See
// BENCHMARKS.md.
package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

type pathList []string

func (p *pathList) String() string     { return strings.Join(*p, ",") }
func (p *pathList) Set(v string) error { *p = append(*p, v); return nil }

type options struct {
	addr, token string
	nodes       map[string]string // -node name=address
	standin     string
	concurrency int
	duration    time.Duration
	warmup      time.Duration
	repeat      int
	paths       pathList
	pluginName  string
	pluginPath  string
	vaultName   string
	leasePrefix pathList
	coldMount   string
	coldConfig  string
	coldRepeat  int
	jsonOut     bool
}

func main() {
	var o options
	flag.StringVar(&o.addr, "addr", envOr("VAULT_ADDR", "http://127.0.0.1:8200"), "Vault address")
	flag.StringVar(&o.token, "token", os.Getenv("VAULT_TOKEN"), "Vault token")
	o.nodes = map[string]string{}
	flag.Func("node", "NAME=ADDRESS (repeatable): a path written NAME:path is read through this node", func(v string) error {
		name, addr, ok := strings.Cut(v, "=")
		if !ok || name == "" || addr == "" {
			return fmt.Errorf("want NAME=ADDRESS, got %q", v)
		}
		o.nodes[name] = addr
		return nil
	})
	flag.StringVar(&o.standin, "standin", "", "the Manus stand-in's base URL, to count the mints during each measured run")
	flag.IntVar(&o.concurrency, "concurrency", 16, "concurrent clients")
	flag.DurationVar(&o.duration, "duration", 15*time.Second, "measured time per path and round")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured reads before each measurement")
	flag.IntVar(&o.repeat, "repeat", 3, "rounds over all paths; figures are medians over rounds")
	flag.Var(&o.paths, "path", "path to read (repeatable): the first is measured against each later one, its baselines")
	flag.StringVar(&o.pluginName, "plugin", "vault-plugin-secrets-manus", "plugin name in the catalog (for -cold-mount) and, without -plugin-path, binary name for its RSS")
	flag.StringVar(&o.pluginPath, "plugin-path", "", "the path the plugin runs from, for its RSS (default: any process named -plugin)")
	flag.StringVar(&o.vaultName, "vault", "vault", "Vault server binary name, or the path it runs from, for its RSS")
	flag.Var(&o.leasePrefix, "lease-prefix", "count the leases Vault holds under this prefix afterwards (repeatable), e.g. manus/token/")
	flag.StringVar(&o.coldMount, "cold-mount", "", "if set, time mounting the plugin here until the first token")
	flag.StringVar(&o.coldConfig, "cold-config", "", "JSON config written to the cold mount")
	flag.IntVar(&o.coldRepeat, "cold-repeat", 5, "cold-start measurements")
	flag.BoolVar(&o.jsonOut, "json", false, "print JSON instead of a table")
	flag.Parse()
	if len(o.paths) == 0 && o.coldMount == "" {
		fail("give at least one -path or -cold-mount")
	}
	for _, p := range o.paths {
		if _, _, err := o.target(p); err != nil {
			fail(err.Error())
		}
	}

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.concurrency * 2}, Timeout: time.Minute}
	report := map[string]any{"concurrency": o.concurrency, "duration": o.duration.String(), "rounds": o.repeat}
	results := measurePaths(client, o)
	report["paths"] = results
	if o.coldMount != "" {
		report["cold_start"] = measureColdStart(client, o)
	}
	report["plugin_peak_rss_kib"] = peakRSS(cmp.Or(o.pluginPath, o.pluginName))
	report["vault_peak_rss_kib"] = peakRSS(o.vaultName)
	leases := map[string]int{}
	for _, prefix := range o.leasePrefix {
		leases[prefix] = countLeases(client, o, prefix)
	}
	report["leases_held"] = leases
	if o.jsonOut {
		must(json.NewEncoder(os.Stdout).Encode(report))
		return
	}
	printTable(report, results)
}

type pathResult struct {
	Path        string  `json:"path"`
	ReadsPerSec float64 `json:"reads_per_sec"`
	P50Micros   float64 `json:"p50_us"`
	P99Micros   float64 `json:"p99_us"`
	Errors      int     `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	// Mints is what the stand-in issued during the measured runs (-1
	// without -standin).
	Mints         int     `json:"mints"`
	FirstOverThis float64 `json:"first_path_throughput_over_this,omitempty"`
	// FirstOverThisByRound compares paths measured seconds apart, so it
	// shows whether a ratio holds in every round or only in the medians.
	FirstOverThisByRound []float64 `json:"first_path_throughput_over_this_by_round,omitempty"`
	RoundsPerSec         []float64 `json:"rounds_reads_per_sec"`
}

// measurePaths runs the rounds, each over every path in turn, so slow drift
// in the server (leases piling up) spreads over all paths.
func measurePaths(client *http.Client, o options) []pathResult {
	perPath := map[string][]roundResult{}
	for round := range o.repeat {
		for _, p := range o.paths {
			run(client, o, p, o.warmup)
			r := run(client, o, p, o.duration)
			perPath[p] = append(perPath[p], r)
			fmt.Fprintf(os.Stderr, "round %d %-24s %8.0f reads/s p50 %6.0fus p99 %6.0fus errors %d mints %s\n",
				round+1, p, r.readsPerSec, r.p50, r.p99, r.errors, mintsText(r.mints))
		}
	}
	var out []pathResult
	for _, p := range o.paths {
		rounds := perPath[p]
		res := pathResult{Path: p}
		var rps, p50, p99 []float64
		for _, r := range rounds {
			rps, p50, p99 = append(rps, r.readsPerSec), append(p50, r.p50), append(p99, r.p99)
			res.Errors += r.errors
			res.Mints = sumMints(res.Mints, r.mints)
			if res.FirstError == "" {
				res.FirstError = r.firstError
			}
		}
		res.ReadsPerSec, res.P50Micros, res.P99Micros, res.RoundsPerSec = median(rps), median(p50), median(p99), rps
		out = append(out, res)
	}
	for i := range out {
		if i == 0 || out[i].ReadsPerSec == 0 {
			continue
		}
		out[i].FirstOverThis = out[0].ReadsPerSec / out[i].ReadsPerSec
		for round, rps := range out[i].RoundsPerSec {
			ratio := 0.0 // a round with no successful read has no ratio
			if rps > 0 {
				ratio = out[0].RoundsPerSec[round] / rps
			}
			out[i].FirstOverThisByRound = append(out[i].FirstOverThisByRound, ratio)
		}
	}
	return out
}

type roundResult struct {
	readsPerSec, p50, p99 float64
	errors                int
	firstError            string
	mints                 int // -1 when not counted
}

// sumMints adds up mint counts, -1 standing for "not counted".
func sumMints(a, b int) int {
	if a < 0 || b < 0 {
		return -1
	}
	return a + b
}

// run reads path for d through the node it names and counts the mints the
// stand-in saw meanwhile.
func run(client *http.Client, o options, path string, d time.Duration) roundResult {
	o, path, _ = o.target(path) // checked in main
	mintsBefore := standinMints(client, o)
	var mu sync.Mutex
	var latencies []time.Duration
	errors, firstError := 0, ""
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			bad, firstBad := 0, ""
			for time.Now().Before(deadline) {
				started := time.Now()
				if err := read(client, o, path); err != nil {
					if bad++; firstBad == "" {
						firstBad = err.Error()
					}
					continue
				}
				mine = append(mine, time.Since(started))
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			errors += bad
			if firstError == "" {
				firstError = firstBad
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(latencies)
	mints := -1
	if before, after := mintsBefore, standinMints(client, o); before >= 0 && after >= 0 {
		mints = after - before
	}
	return roundResult{
		readsPerSec: float64(len(latencies)) / d.Seconds(),
		p50:         micros(percentile(latencies, 0.50)),
		p99:         micros(percentile(latencies, 0.99)),
		errors:      errors,
		firstError:  firstError,
		mints:       mints,
	}
}

// mintsText shows a mint count, "-" when not counted.
func mintsText(n int) string {
	if n < 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

// target resolves a path written NODE:path to the options for that node's
// address and the path; any other path is read through -addr.
func (o options) target(p string) (options, string, error) {
	name, path, ok := strings.Cut(p, ":")
	if !ok {
		return o, p, nil
	}
	addr, known := o.nodes[name]
	if !known {
		return o, p, fmt.Errorf("path %q names node %q, which no -node gives", p, name)
	}
	o.addr = addr
	return o, path, nil
}

// standinMints is the stand-in's count of issued tokens, -1 without
// -standin or if it cannot be read.
func standinMints(client *http.Client, o options) int {
	if o.standin == "" {
		return -1
	}
	resp, err := client.Get(o.standin + "/_standin/stats")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var stats struct {
		Mints int `json:"mints"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&stats) != nil {
		return -1
	}
	return stats.Mints
}

func read(client *http.Client, o options, path string) error {
	return call(client, o, http.MethodGet, path, "")
}

type coldStart struct {
	MedianMillis float64   `json:"median_ms"`
	Millis       []float64 `json:"runs_ms"`
}

// measureColdStart mounts the plugin, writes its config (without
// verification, so the first read mints) and reads a token, timing from the
// enable call to the token.
func measureColdStart(client *http.Client, o options) coldStart {
	var runs []float64
	for i := range o.coldRepeat {
		mount := fmt.Sprintf("%s-%d", o.coldMount, i)
		started := time.Now()
		must(call(client, o, http.MethodPost, "sys/mounts/"+mount, fmt.Sprintf(`{"type":%q}`, o.pluginName)))
		took := time.Since(started)
		must(call(client, o, http.MethodPost, mount+"/config", o.coldConfig))
		configured := time.Since(started)
		must(read(client, o, mount+"/token"))
		total := time.Since(started)
		fmt.Fprintf(os.Stderr, "cold start %d: enable %s, config %s, first token %s\n", i+1, took.Round(time.Millisecond), (configured - took).Round(time.Millisecond), (total - configured).Round(time.Millisecond))
		runs = append(runs, float64(total.Microseconds())/1000)
		must(call(client, o, http.MethodDelete, "sys/mounts/"+mount, ""))
	}
	return coldStart{MedianMillis: median(runs), Millis: runs}
}

// countLeases lists the leases under prefix (sys/leases/lookup), -1 if the
// list fails.
func countLeases(client *http.Client, o options, prefix string) int {
	status, body, err := vaultRequest(client, o, "LIST", "sys/leases/lookup/"+prefix, "")
	switch {
	case err != nil:
		return -1
	case status == http.StatusNotFound:
		return 0
	}
	var list struct {
		Data struct {
			Keys []string `json:"keys"`
		} `json:"data"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &list) != nil {
		return -1
	}
	return len(list.Data.Keys)
}

// call sends one request and fails on any status from 300 up.
func call(client *http.Client, o options, method, path, body string) error {
	status, msg, err := vaultRequest(client, o, method, path, body)
	if err == nil && status >= 300 {
		err = fmt.Errorf("%s %s: HTTP %d %s", method, path, status, msg)
	}
	return err
}

// vaultRequest sends one request with the token to /v1/path and returns
// the status and the whole body, read to the end so the connection is
// reused.
func vaultRequest(client *http.Client, o options, method, path, body string) (int, []byte, error) {
	req, err := http.NewRequest(method, o.addr+"/v1/"+path, bytes.NewBufferString(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("X-Vault-Token", o.token)
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, msg, nil
}

// peakRSS is the high-water RSS (VmHWM) of the running processes of a
// binary, in KiB; Linux only. A name with a slash is the path the process
// was started from, so that other processes of the same binary on the host
// (another Vault) are not counted.
func peakRSS(name string) int {
	peak := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !runsFrom(string(bytes.SplitN(cmdline, []byte{0}, 2)[0]), name) {
			continue
		}
		status, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		for _, line := range strings.Split(string(status), "\n") {
			if kib, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(kib), "kB")))
				peak = max(peak, n)
			}
		}
	}
	return peak
}

// runsFrom reports whether a process started as argv0 is the binary name:
// the same path if name has a slash, else the same file name.
func runsFrom(argv0, name string) bool {
	if strings.Contains(name, "/") {
		return argv0 == name
	}
	return filepath.Base(argv0) == name
}

func printTable(report map[string]any, results []pathResult) {
	fmt.Printf("concurrency %v, %v per path and round, %v rounds (medians)\n\n", report["concurrency"], report["duration"], report["rounds"])
	fmt.Printf("%-24s %10s %10s %10s %8s %6s %12s  %s\n", "path", "reads/s", "p50 (us)", "p99 (us)", "errors", "mints", "first/this", "first/this by round")
	for i, r := range results {
		vs, byRound := "-", "-"
		if i > 0 && r.ReadsPerSec > 0 {
			vs = fmt.Sprintf("%.2f", r.FirstOverThis)
			byRound = formatRatios(r.FirstOverThisByRound)
		}
		fmt.Printf("%-24s %10.0f %10.0f %10.0f %8d %6s %12s  %s\n", r.Path, r.ReadsPerSec, r.P50Micros, r.P99Micros, r.Errors, mintsText(r.Mints), vs, byRound)
	}
	for _, r := range results {
		if r.FirstError != "" {
			fmt.Printf("first failure of %s: %s\n", r.Path, strings.Join(strings.Fields(r.FirstError), " "))
		}
	}
	if cs, ok := report["cold_start"].(coldStart); ok {
		fmt.Printf("\ncold start (enable -> first token): median %.0f ms over %d runs\n", cs.MedianMillis, len(cs.Millis))
	}
	fmt.Printf("plugin peak RSS: %.1f MiB, Vault peak RSS: %.1f MiB\n",
		float64(report["plugin_peak_rss_kib"].(int))/1024, float64(report["vault_peak_rss_kib"].(int))/1024)
	leases := report["leases_held"].(map[string]int)
	for _, prefix := range slices.Sorted(maps.Keys(leases)) {
		fmt.Printf("leases held under %s: %d\n", prefix, leases[prefix])
	}
}

func formatRatios(ratios []float64) string {
	parts := make([]string, len(ratios))
	for i, r := range ratios {
		parts[i] = fmt.Sprintf("%.2f", r)
	}
	return strings.Join(parts, " ")
}

func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func must(err error) {
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "manus-loadtest:", msg)
	os.Exit(1)
}
