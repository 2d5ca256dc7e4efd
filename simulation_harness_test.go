package manus

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing/synctest"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/manus-community/vault-plugin-secrets-manus/internal/standin"
)

// The simulated cluster (issue 31): several nodes, each running the real
// plugin built by Factory, sharing one simulated storage with Vault's rules,
// in front of the strict Manus stand-in, all on one fake clock (a
// testing/synctest bubble per history). simulation_test.go drives histories
// through it and shrinks failures; simulation_invariants_test.go holds the
// promises checked after every step.
//
// What is modelled, and its bounds:
//   - Storage: one log of writes. Only the active node's storage accepts
//     writes; every other node's refuses them with the read-only error as it
//     arrives over gRPC (its text). Each write reaches every other node's
//     view after the delay the step drew for that node (at most
//     simMaxInvalidationDelay, the server's limit), in log order; a node
//     applies what is due as one batch and then calls Invalidate once per
//     key written, in order, as a Raft follower does.
//   - A failover makes another node active with every write applied (a new
//     Raft leader has them all) and sets the mount up again on both nodes; a
//     restart or plugin reload is Clean and a new backend on the same
//     storage view.
//   - Leases: Vault registers a lease in the answering node's storage, so a
//     leased answer from a node that cannot write its own storage (every node
//     but the active one and a performance secondary's) fails there.
//   - Manus: internal/standin behind an in-process http.RoundTripper (the
//     backend's upstream seam), reached at the default base_url, at a proxy
//     an operator may move to, and a capture host (a standin.Recorder) that
//     someone with update on config may plant.

// simMaxInvalidationDelay bounds how long a write takes to reach another
// node's storage and its Invalidate: docs/cluster.md, "at most the server's
// 2-second limit per call".
const simMaxInvalidationDelay = 2 * time.Second

// simNetworkLatency, per node number, orders requests made at one instant;
// on another grid than replication's (lagFor), so the two never coincide.
const simNetworkLatency = 10 * time.Microsecond

const (
	simHostManus   = "api.manus.im"         // the default base_url
	simHostProxy   = "manus-proxy.internal" // Manus through a proxy the owner may move to
	simHostCapture = "capture.example"      // planted by someone with update on config
	simOwnerID     = "tm_SimOwner000000000000"
	simAttackerID  = "tm_SimPlanted0000000000"
)

func simBaseURL(host string) string { return "https://" + host }

// simRole is what a node is in the cluster; its replication state is what
// Vault or OpenBao reports for it.
type simRole int

const (
	roleActive               simRole = iota
	roleStandby                      // an OpenBao standby serving reads
	rolePerfStandby                  // a Vault Enterprise performance standby
	rolePerfSecondary                // the active node of a performance secondary
	rolePerfSecondaryStandby         // a standby of a performance secondary
	roleDRSecondary                  // a DR secondary
	roleSilent                       // reports a state that may write; its storage refuses writes
	numRoles
)

var simRoleNames = [...]string{"active", "standby", "perf-standby", "perf-secondary", "perf-secondary-standby", "dr-secondary", "silent-read-only"}

func (r simRole) String() string { return simRoleNames[r] }

func (r simRole) state(enterprise bool) consts.ReplicationState {
	primary := consts.ReplicationState(0)
	if enterprise {
		primary = consts.ReplicationPerformancePrimary
	}
	switch r {
	case roleStandby:
		return consts.ReplicationPerformanceStandby
	case rolePerfStandby:
		return primary | consts.ReplicationPerformanceStandby
	case rolePerfSecondary:
		return consts.ReplicationPerformanceSecondary
	case rolePerfSecondaryStandby:
		return consts.ReplicationPerformanceSecondary | consts.ReplicationPerformanceStandby
	case roleDRSecondary:
		return consts.ReplicationDRSecondary
	}
	return primary // the active node, and a silent node that claims to be one
}

// stateAllowsWrites is what the docs say the node's replication state
// allows for a replicated mount (docs/cluster.md).
func (r simRole) stateAllowsWrites() bool { return r == roleActive || r == roleSilent }

// storageWritable: only the active node's storage takes writes.
func (r simRole) storageWritable() bool { return r == roleActive }

// registersLeases: the server can store a lease on this node.
func (r simRole) registersLeases() bool { return r == roleActive || r == rolePerfSecondary }

// simSystemView is Vault's side of one backend: its node's replication state
// when the mount was set up (a change of role sets the mount up again).
func simSystemView(state consts.ReplicationState) *logical.StaticSystemView {
	return &logical.StaticSystemView{
		DefaultLeaseTTLVal:  768 * time.Hour,
		MaxLeaseTTLVal:      768 * time.Hour,
		ReplicationStateVal: state,
	}
}

// simLogEntry is one storage write; value nil is a delete.
type simLogEntry struct {
	key   string
	value []byte
	at    time.Time
	cfg   *manusConfig // decoded, for key config
	tok   *storedToken // decoded, for key token
}

type simDelivery struct {
	upTo int
	due  time.Time
}

// simNode is one cluster node: its role, its view of storage, the backend
// Vault set up for the mount there, and what replication still owes it.
type simNode struct {
	id    int
	role  simRole
	inc   int       // backend incarnation: every set-up counts one
	roles []simRole // role per incarnation
	b     atomic.Pointer[backend]
	view  *simView

	queue   []simDelivery
	lastDue time.Time
	wake    chan struct{}
}

// simView is a node's storage: the log applied up to applied; informed is
// how far its Invalidate calls have returned.
type simView struct {
	s        *sim
	n        *simNode
	data     map[string][]byte
	applied  int
	informed int
}

var _ logical.Storage = (*simView)(nil)

func (v *simView) List(_ context.Context, prefix string) ([]string, error) {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	var keys []string
	for k := range v.data {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, strings.TrimPrefix(k, prefix))
		}
	}
	slices.Sort(keys)
	return keys, nil
}

func (v *simView) Get(_ context.Context, key string) (*logical.StorageEntry, error) {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	value, ok := v.data[key]
	if !ok {
		return nil, nil
	}
	return &logical.StorageEntry{Key: key, Value: bytes.Clone(value)}, nil
}

func (v *simView) Put(_ context.Context, e *logical.StorageEntry) error {
	return v.write(e.Key, bytes.Clone(e.Value))
}

func (v *simView) Delete(_ context.Context, key string) error {
	return v.write(key, nil)
}

func (v *simView) write(key string, value []byte) error {
	s := v.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if !v.n.role.storageWritable() {
		s.noteRefusalLocked(v.n)
		return errReadOnlyOverGRPC
	}
	s.appendLocked(v.n, key, value)
	return nil
}

// applyLocked applies the log up to upTo and returns the keys written.
func (v *simView) applyLocked(upTo int) []string {
	var keys []string
	for ; v.applied < upTo; v.applied++ {
		e := v.s.log[v.applied]
		if e.value == nil {
			delete(v.data, e.key)
		} else {
			v.data[e.key] = e.value
		}
		keys = append(keys, e.key)
	}
	return keys
}

func (v *simView) storedTokenLocked() *storedToken { return decodeStoredToken(v.data[tokenStorageKey]) }
func (v *simView) configLocked() *manusConfig      { return decodeConfig(v.data[configStorageKey]) }

func decodeStoredToken(value []byte) *storedToken {
	if value == nil {
		return nil
	}
	var st storedToken
	if json.Unmarshal(value, &st) != nil {
		return nil
	}
	return &st
}

func decodeConfig(value []byte) *manusConfig {
	if value == nil {
		return nil
	}
	cfg := newDefaultConfig()
	if json.Unmarshal(value, cfg) != nil {
		return nil
	}
	return cfg
}

// simSetup is what a history starts from.
type simSetup struct {
	roles      []simRole // roles[0] is roleActive
	enterprise bool      // the active node reports ReplicationPerformancePrimary
	leased     bool
	lifetime   time.Duration
}

func (su simSetup) String() string {
	roles := make([]string, len(su.roles))
	for i, r := range su.roles {
		roles[i] = r.String()
	}
	return fmt.Sprintf("nodes [%s], enterprise %v, leased_reads %v, token lifetime %s", strings.Join(roles, " "), su.enterprise, su.leased, su.lifetime)
}

type simActionKey struct{}

// sim is one history's cluster. mu guards everything below it; it is never
// held while calling into a backend.
type sim struct {
	setup   simSetup
	manus   *standin.Server
	capture *standin.Recorder
	stop    chan struct{}
	start   time.Time

	mu     sync.Mutex
	nodes  []*simNode
	active int
	log    []simLogEntry
	step   int
	lags   []time.Duration

	// Manus, as the simulation set it up.
	clients      map[string]string // client_id -> secret, as the stand-in knows them
	ownerSecret  string
	secretSeq    int
	queuedFaults int
	outage       bool
	lifetime     time.Duration

	// What the invariants need.
	tokens        map[string]*simToken
	tokenIDs      []string
	gens          map[string]*simGen
	genOrder      []string
	confirmed     map[[2]string]bool
	calls         []*simCall // in flight
	caches        map[simCacheKey]*simCacheTrack
	refusals      map[[2]int]*simRefusals
	pendingRetry  map[simRetryKey]int
	refreshing    map[int]bool
	localRejected map[[2]int]map[string]time.Time
	probeRejects  map[int][]string       // by the probe's tag, until it returns
	writes        map[int]map[string]any // config writes' data, by tag
	rejections    []simRejection
	lastFailure   time.Time
	lastRejection time.Time
	rejectRun     int
	served        []simAnswer // by the active node this step
	violation     *simViolation

	holding  bool
	bursting bool // the step sends concurrent requests
	burstLog int  // how much of the log had been written when the burst began
	held     int
	release  chan struct{}

	events []string
	stats  *simStats
}

// simToken is a token Manus issued, as Manus recorded it.
type simToken struct {
	id           int
	node, inc    int
	gen          string
	verification bool
	host         string
	requestedAt  time.Time // the plugin's MintedAt
	expiresAt    time.Time // Manus's own record, at issue
}

// simGen is a config generation a backend built a client for.
type simGen struct {
	id        int
	threshold time.Duration
}

type simCacheKey struct {
	node, inc int
	gen       string
}

// simCacheTrack follows one cache's mints as Manus sees them, for the
// hold-off invariants.
type simCacheTrack struct {
	lastAttemptFailed bool
	lastAttemptEnd    time.Time
	lastRetryAfter    time.Duration
	failedMints       int
	failedAt          time.Time
	retryAfter        time.Duration
	askedUntil        time.Time
	rejections        int
	rejectedAt        time.Time
}

type simRetryKey struct{ node, inc, tag int }

// simRefusals are the writes a silent node's storage refused in a row, and
// the step of the last.
type simRefusals struct {
	holdOff
	step  int
	burst bool
}

// simCall is one request to an upstream host.
type simCall struct {
	node, inc int
	role      simRole
	gen       string
	tag       int // the simulated request it belongs to (a config write's verification, a probe); 0: a cache mint
	host      string
	path      string
	secret    string
	bearer    string
	at        time.Time
	ctx       context.Context
	retry     bool
	refresh   bool
}

// simRejection is a token a probe on the node that writes saw Manus
// reject: every write up to index was made by the time the probe answered.
type simRejection struct {
	token string
	index int
	at    time.Time
}

type simViolation struct {
	invariant string
	step      int
	detail    string
}

func newSim(su simSetup, stats *simStats) *sim {
	s := &sim{
		setup:         su,
		manus:         standin.New(),
		capture:       &standin.Recorder{},
		stop:          make(chan struct{}),
		start:         time.Now(),
		clients:       map[string]string{},
		lifetime:      su.lifetime,
		tokens:        map[string]*simToken{},
		gens:          map[string]*simGen{},
		confirmed:     map[[2]string]bool{},
		caches:        map[simCacheKey]*simCacheTrack{},
		refusals:      map[[2]int]*simRefusals{},
		pendingRetry:  map[simRetryKey]int{},
		refreshing:    map[int]bool{},
		localRejected: map[[2]int]map[string]time.Time{},
		probeRejects:  map[int][]string{},
		writes:        map[int]map[string]any{},
		stats:         stats,
	}
	s.manus.SetLifetime(su.lifetime)
	s.ownerSecret = s.newSecret("owner")
	s.setClient(simOwnerID, s.ownerSecret)
	for i, r := range su.roles {
		n := &simNode{id: i, role: r, wake: make(chan struct{}, 1)}
		n.view = &simView{s: s, n: n, data: map[string][]byte{}}
		s.nodes = append(s.nodes, n)
		s.setUp(n)
		go s.replicate(n)
	}
	stats.add("histories", 1)
	for _, r := range su.roles {
		stats.add("role seen: "+r.String(), 1)
	}
	return s
}

func (s *sim) newSecret(who string) string {
	s.secretSeq++
	return fmt.Sprintf("%s-secret-%04d-5f1e0c2b9a7d4e6f8a1b3c5d7e9f0a2b", who, s.secretSeq)
}

func (s *sim) setClient(id, secret string) {
	s.clients[id] = secret
	s.manus.AddClient(id, secret)
}

// setUp builds the node's backend with Factory, as Vault sets a mount up.
func (s *sim) setUp(n *simNode) {
	s.mu.Lock()
	n.inc++
	n.roles = append(n.roles, n.role)
	inc, role := n.inc, n.role
	s.mu.Unlock()
	conf := logical.TestBackendConfig()
	conf.Logger = hclog.NewNullLogger()
	conf.StorageView = n.view
	conf.System = simSystemView(role.state(s.setup.enterprise))
	raw, err := Factory(context.Background(), conf)
	if err != nil {
		panic(err)
	}
	b := raw.(*backend)
	b.upstream = s.upstreamFor(n.id, inc)
	b.retry.sleep = s.retrySleep(n.id, inc)
	n.b.Store(b)
}

// tearDown is Clean, as Vault calls it on a reload, a restart or a role
// change.
func (s *sim) tearDown(n *simNode) {
	if b := n.b.Load(); b != nil {
		b.Cleanup(context.Background())
	}
}

func (s *sim) close() {
	close(s.stop)
	s.mu.Lock()
	if s.holding {
		s.holding = false
		close(s.release)
	}
	s.mu.Unlock()
	s.manus.ClearOutage()
	for _, n := range s.nodes {
		s.tearDown(n)
	}
	// Whatever was on a timer (a request in its network latency) ends;
	// anything still blocked after that is a leak, which synctest reports.
	time.Sleep(time.Minute)
	synctest.Wait()
}

// appendLocked writes to the log: at once on the writer's view, and on
// every other node after the delay this step drew for it.
func (s *sim) appendLocked(writer *simNode, key string, value []byte) {
	e := simLogEntry{key: key, value: value, at: time.Now()}
	switch key {
	case configStorageKey:
		e.cfg = decodeConfig(value)
	case tokenStorageKey:
		e.tok = decodeStoredToken(value)
	}
	s.log = append(s.log, e)
	writer.view.applyLocked(len(s.log))
	writer.view.informed = len(s.log)
	s.stats.add("storage writes", 1)
	s.eventf("storage: node %d wrote %s", writer.id, s.describeEntry(e))
	for _, n := range s.nodes {
		if n == writer {
			continue
		}
		due := e.at.Add(s.lagFor(n.id))
		if due.Before(n.lastDue) {
			due = n.lastDue // replication keeps the log's order
		}
		n.lastDue = due
		n.queue = append(n.queue, simDelivery{upTo: len(s.log), due: due})
		select {
		case n.wake <- struct{}{}:
		default:
		}
	}
}

// lagFor is node's replication delay in this step: at least a millisecond,
// so a write reaches other nodes only once everything it is part of has
// settled, and a few microseconds apart per node, so no two deliveries, and
// no delivery and a plugin timer, fall on one instant (a history replays
// the same way).
func (s *sim) lagFor(node int) time.Duration {
	lag := time.Millisecond
	if len(s.lags) > 0 {
		lag = min(max(s.lags[node%len(s.lags)], lag), simMaxInvalidationDelay-time.Millisecond)
	}
	return lag + time.Duration(node+1)*time.Microsecond
}

// replicate brings n's view up to date as writes come due, then calls
// Invalidate for each key written, as a follower applying a batch does.
func (s *sim) replicate(n *simNode) {
	for {
		s.mu.Lock()
		if len(n.queue) == 0 {
			s.mu.Unlock()
			select {
			case <-n.wake:
				continue
			case <-s.stop:
				return
			}
		}
		wait := time.Until(n.queue[0].due)
		s.mu.Unlock()
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-s.stop:
				t.Stop()
				return
			}
		}
		s.mu.Lock()
		upTo, now := 0, time.Now()
		for len(n.queue) > 0 && !n.queue[0].due.After(now) {
			upTo = max(upTo, n.queue[0].upTo)
			n.queue = n.queue[1:]
		}
		keys := n.view.applyLocked(upTo)
		if len(keys) > 0 {
			s.eventf("replication: node %d applied the log up to %d (%s)", n.id, upTo, strings.Join(keys, ", "))
		}
		s.mu.Unlock()
		if b := n.b.Load(); b != nil {
			for _, key := range keys {
				b.InvalidateKey(context.Background(), key)
			}
		}
		s.mu.Lock()
		n.view.informed = max(n.view.informed, upTo)
		s.mu.Unlock()
	}
}

func (s *sim) noteRefusalLocked(n *simNode) {
	if n.role != roleSilent {
		return
	}
	key := [2]int{n.id, n.inc}
	h := s.refusals[key]
	if h == nil {
		h = &simRefusals{}
		s.refusals[key] = h
	}
	h.note(time.Now(), func(count int) time.Duration {
		return cappedDoubling(firstRefusalWindow, maxRefusalWindow, count-1)
	})
	h.step, h.burst = s.step, s.bursting
	s.stats.add("writes refused on a silent read-only node", 1)
	s.eventf("storage: node %d's write refused as read-only (%d in a row)", n.id, h.count)
}

// upstreamFor is the backend's upstream seam: every client it builds sends
// its requests here, labelled with the node, the incarnation and the config
// generation it was built for.
func (s *sim) upstreamFor(node, inc int) func(cfg *manusConfig) http.RoundTripper {
	return func(cfg *manusConfig) http.RoundTripper {
		s.mu.Lock()
		if g := s.gens[cfg.Generation]; g == nil {
			s.gens[cfg.Generation] = &simGen{id: len(s.gens) + 1, threshold: cfg.RefreshThreshold}
			s.genOrder = append(s.genOrder, cfg.Generation)
		}
		s.mu.Unlock()
		return &simUpstream{s: s, node: node, inc: inc, gen: cfg.Generation}
	}
}

// retrySleep is the minter's wait between attempts without its jitter, so
// a history replays the same way; it also tells the simulation that the
// node's next request is a retry.
func (s *sim) retrySleep(node, inc int) func(ctx context.Context, d time.Duration) error {
	return func(ctx context.Context, d time.Duration) error {
		err := sleepContext(ctx, simRetryDelay(d))
		if err == nil {
			tag, _ := ctx.Value(simActionKey{}).(int)
			s.mu.Lock()
			s.pendingRetry[simRetryKey{node, inc, tag}]++
			s.mu.Unlock()
		}
		return err
	}
}

// simRetryDelay removes the jitter: a Retry-After (whole seconds) stays, a
// jittered delay in [c/2, c] becomes c less a millisecond, so no retry
// falls on the instant a reader gives up (request_timeout + 0.5 s).
func simRetryDelay(d time.Duration) time.Duration {
	if d%time.Second == 0 {
		return d
	}
	c := defaultRetryPolicy.baseDelay
	for c < d && c < defaultRetryPolicy.maxDelay {
		c *= 2
	}
	return c - time.Millisecond
}

type simUpstream struct {
	s         *sim
	node, inc int
	gen       string
}

func (u *simUpstream) RoundTrip(req *http.Request) (*http.Response, error) {
	s := u.s
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		return nil, err // as http.Transport does: nothing is sent
	}
	tag, _ := ctx.Value(simActionKey{}).(int)
	c := &simCall{node: u.node, inc: u.inc, gen: u.gen, tag: tag, host: req.URL.Host, path: req.URL.Path, at: time.Now(), ctx: ctx}
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	if c.path == tokenEndpointPath {
		form, _ := url.ParseQuery(string(body))
		c.secret = form.Get("client_secret")
	} else {
		c.bearer = strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer ")
	}
	s.beginCall(c)
	if c.path == tokenEndpointPath && !s.holdIfHolding(ctx) {
		s.endCall(c, 0, nil, nil)
		return nil, ctx.Err()
	}
	// A few microseconds of network, different per node: requests made at
	// one instant reach Manus in node order, so a queued fault goes to the
	// same request every time a history is replayed.
	latency := time.Duration(u.node+1) * simNetworkLatency
	if tag != 0 {
		latency += simNetworkLatency / 2 // a write's or probe's own request, after the node's cache mint
	}
	time.Sleep(latency)
	var handler http.Handler
	switch c.host {
	case simHostManus, simHostProxy:
		handler = s.manus
	case simHostCapture:
		handler = s.capture
	default:
		s.endCall(c, 0, nil, nil)
		return nil, fmt.Errorf("dial tcp: lookup %s: no such host", c.host)
	}
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	if err := ctx.Err(); err != nil {
		s.endCall(c, 0, nil, nil)
		return nil, err
	}
	resp := rec.Result()
	resp.Request = req
	s.endCall(c, rec.Code, rec.Body.Bytes(), rec.Header())
	return resp, nil
}

// holdIfHolding keeps a token request until the simulation releases it, so
// a burst of readers is all in before Manus answers; false if the request
// gave up first.
func (s *sim) holdIfHolding(ctx context.Context) bool {
	s.mu.Lock()
	if !s.holding {
		s.mu.Unlock()
		return true
	}
	s.held++
	release := s.release
	s.mu.Unlock()
	select {
	case <-release:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *sim) beginCall(c *simCall) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.role = s.nodes[c.node].roles[c.inc-1]
	c.refresh = s.refreshing[c.node]
	if c.path == tokenEndpointPath {
		k := simRetryKey{c.node, c.inc, c.tag}
		if s.pendingRetry[k] > 0 {
			s.pendingRetry[k]--
			c.retry = true
		}
		s.stats.add("token requests", 1)
		if s.queuedFaults > 0 && c.host != simHostCapture {
			s.queuedFaults--
		}
	} else {
		s.stats.add("users API calls", 1)
	}
	s.eventf("upstream: node %d (%s, %s) %s %s%s%s", c.node, c.role, s.genName(c.gen), c.host, c.path, map[bool]string{true: " (retry)"}[c.retry], map[bool]string{true: " (refresh)"}[c.refresh])
	s.checkCallLocked(c)
	s.calls = append(s.calls, c)
}

func (s *sim) endCall(c *simCall, status int, body []byte, header http.Header) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = slices.DeleteFunc(s.calls, func(x *simCall) bool { return x == c })
	now := time.Now()
	if c.path != tokenEndpointPath {
		s.endUsersCallLocked(c, status)
		return
	}
	var answer struct {
		AccessToken string `json:"access_token"`
	}
	if status == http.StatusOK && json.Unmarshal(body, &answer) == nil && answer.AccessToken != "" {
		s.tokenIDs = append(s.tokenIDs, answer.AccessToken)
		s.tokens[answer.AccessToken] = &simToken{
			id: len(s.tokenIDs), node: c.node, inc: c.inc, gen: c.gen, verification: c.tag != 0,
			host: c.host, requestedAt: c.at, expiresAt: s.manus.ExpiresAt(answer.AccessToken),
		}
		s.stats.add("tokens issued", 1)
		s.eventf("upstream: Manus issued %s to node %d (%s)", s.tokenName(answer.AccessToken), c.node, s.genName(c.gen))
		if c.tag == 0 {
			k := s.cacheLocked(c)
			k.lastAttemptFailed, k.failedMints, k.askedUntil = false, 0, time.Time{}
		}
		return
	}
	s.lastFailure = now
	s.stats.add("token requests failed", 1)
	s.eventf("upstream: token request from node %d failed (HTTP %d)", c.node, status)
	if c.tag == 0 {
		k := s.cacheLocked(c)
		k.lastAttemptFailed, k.lastAttemptEnd, k.lastRetryAfter = true, now, 0
		if status == http.StatusTooManyRequests {
			k.lastRetryAfter = parseRetryAfter(header.Get("Retry-After"), now)
		}
	}
}

func (s *sim) endUsersCallLocked(c *simCall, status int) {
	k := s.cacheLocked(c)
	switch {
	case status == http.StatusUnauthorized:
		k.rejections++
		k.rejectedAt = time.Now()
		s.lastRejection = time.Now()
		s.rejectRun++
		key := [2]int{c.node, c.inc}
		if s.localRejected[key] == nil {
			s.localRejected[key] = map[string]time.Time{}
		}
		s.localRejected[key][c.bearer] = time.Now()
		if c.role.storageWritable() {
			s.probeRejects[c.tag] = append(s.probeRejects[c.tag], c.bearer)
		}
		s.stats.add("probes rejected (401)", 1)
		s.eventf("upstream: the users API rejected %s", s.tokenName(c.bearer))
	case status >= 200 && status < 300:
		k.rejections = 0
		s.rejectRun = 0
		s.stats.add("probes accepted", 1)
	}
}

func (s *sim) cacheLocked(c *simCall) *simCacheTrack {
	key := simCacheKey{c.node, c.inc, c.gen}
	k := s.caches[key]
	if k == nil {
		k = &simCacheTrack{}
		s.caches[key] = k
	}
	return k
}

func (s *sim) failLocked(invariant, format string, args ...any) {
	if s.violation == nil {
		s.violation = &simViolation{invariant: invariant, step: s.step, detail: fmt.Sprintf(format, args...)}
		s.eventf("VIOLATION %s: %s", invariant, s.violation.detail)
	}
}

// eventf adds a line to the history's trace, printed if it fails; it
// costs about a tenth of the steps per second, and makes every failure
// readable even when it does not replay.
func (s *sim) eventf(format string, args ...any) {
	s.events = append(s.events, fmt.Sprintf("  %9s  ", s.since())+fmt.Sprintf(format, args...))
}

func (s *sim) since() string {
	return time.Since(s.start).Round(time.Millisecond).String()
}

func (s *sim) tokenName(value string) string {
	if t := s.tokens[value]; t != nil {
		return fmt.Sprintf("T%d", t.id)
	}
	if value == "" {
		return "(none)"
	}
	return "(a token Manus never issued)"
}

func (s *sim) genName(gen string) string {
	if g := s.gens[gen]; g != nil {
		return fmt.Sprintf("g%d", g.id)
	}
	if gen == "" {
		return "(no config)"
	}
	return "g?"
}

func (s *sim) describeEntry(e simLogEntry) string {
	switch {
	case e.value == nil:
		return "delete " + e.key
	case e.cfg != nil:
		return fmt.Sprintf("config %s (%s, leased_reads %v)", s.genName(e.cfg.Generation), e.cfg.BaseURL, e.cfg.LeasedReads)
	case e.tok != nil:
		rejected := ""
		if e.tok.Rejected {
			rejected = " marked rejected"
		}
		return fmt.Sprintf("token %s of %s%s", s.tokenName(e.tok.AccessToken), s.genName(e.tok.ConfigGeneration), rejected)
	}
	return e.key
}

// simStats counts what a run covered.
type simStats struct {
	mu     sync.Mutex
	counts map[string]int
}

func newSimStats() *simStats { return &simStats{counts: map[string]int{}} }

func (st *simStats) add(what string, n int) {
	st.mu.Lock()
	st.counts[what] += n
	st.mu.Unlock()
}

func (st *simStats) merge(other *simStats) {
	other.mu.Lock()
	defer other.mu.Unlock()
	for k, v := range other.counts {
		st.add(k, v)
	}
}

func (st *simStats) report() string {
	st.mu.Lock()
	defer st.mu.Unlock()
	keys := make([]string, 0, len(st.counts))
	for k := range st.counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %-52s %d\n", k, st.counts[k])
	}
	return b.String()
}

// simKind is what an action does.
type simKind int

const (
	actRead      simKind = iota // a token read on a node; a burst of concurrent ones when n > 1 (see reads)
	actClock                    // the clock moves on by d
	actWrite                    // a config write (kind n, variant v)
	actDelete                   // a config delete
	actRefresh                  // token/refresh
	actProbe                    // status probe=true
	actManus                    // something Manus does (kind n, variant v)
	actFailover                 // node becomes the active node
	actRestart                  // Vault restarts, or reloads the plugin, on node
	actReloadAll                // vault plugin reload: every node
	actRole                     // a node that is not active changes role (to n)
)

// simAction is one step of a history; lags are the replication delays, per
// node, of the writes the step makes.
type simAction struct {
	kind simKind
	node int
	n, v int
	d    time.Duration
	lags []time.Duration
}

// The config writes an operator (or someone who may update config) makes.
const (
	writeFull          = iota // client_id, client_secret, base_url and settings
	writeRotate               // client_secret alone, or with base_url when v&4
	writeMove                 // base_url alone: refused unless unchanged
	writeTimeout              // request_timeout alone: a new generation, no secret needed
	writeThreshold            // refresh_threshold alone
	writeReadMode             // leased_reads alone: the same generation
	writeSame                 // the stored values again
	writePlant                // base_url=capture with a secret of the planter's own
	writePlantNoSecret        // base_url=capture alone: refused
	writeStaleSecret          // the owner's client_id with a secret Manus no longer knows
	numWriteKinds
)

var simWriteNames = [...]string{"full", "rotate", "move", "timeout", "threshold", "read-mode", "same", "plant", "plant-without-secret", "stale-secret"}

// What Manus does.
const (
	manusFail      = iota // the next token requests fail (503, or a 400 temporarily_unavailable)
	manusLimit            // the next token request gets a 429 with Retry-After
	manusStall            // the next token request gets no answer within any request_timeout
	manusSlow             // the next token request is answered after 2.3 s
	manusOutage           // every token request fails (503), or stalls, until recovery
	manusRecover          // the outage ends
	manusRejectAll        // the users API rejects every token (v&1: until told otherwise)
	manusRevoke           // every token issued to the owner's credential stops being accepted
	manusRotate           // the owner's secret is rotated in the Manus UI
	manusDelete           // the owner's credential is deleted
	manusRestore          // the owner's credential exists again, with its current secret
	manusLifetime         // tokens issued from now on live 1 h, 10 min or 2 min
	numManusKinds
)

var simManusNames = [...]string{"fail", "rate-limit", "stall", "slow", "outage", "recover", "reject-all", "revoke", "rotate-secret", "delete-client", "restore-client", "lifetime"}

var (
	simRetryAfters = []int{1, 5, 30, 120}
	simLifetimes   = []time.Duration{time.Hour, 10 * time.Minute, 2 * time.Minute}
	simTimeouts    = []int{10, 3, 5}
	simThresholds  = []int{600, 1200, 120}
)

func (a simAction) String() string {
	var what string
	switch a.kind {
	case actRead:
		what = fmt.Sprintf("read on node %d", a.node)
		if a.n > 1 {
			spread, other := "", ""
			if a.v&1 == 1 {
				spread = ", spread over the nodes"
			}
			if o := a.burstOther(); o != nil {
				other = ", the first of them a " + o.String()
			}
			if a.racy() {
				other += ", all started at once"
			}
			what = fmt.Sprintf("%d concurrent requests from node %d%s%s", a.n, a.node, spread, other)
		}
	case actClock:
		what = "clock +" + a.d.String()
	case actWrite:
		what = fmt.Sprintf("config write %q on node %d (v=%d)", simWriteNames[a.n], a.node, a.v)
	case actDelete:
		what = fmt.Sprintf("config delete on node %d", a.node)
	case actRefresh:
		what = fmt.Sprintf("token/refresh on node %d", a.node)
	case actProbe:
		what = fmt.Sprintf("status probe on node %d", a.node)
	case actManus:
		what = fmt.Sprintf("Manus: %s (v=%d)", simManusNames[a.n], a.v)
	case actFailover:
		what = fmt.Sprintf("failover to node %d", a.node)
	case actRestart:
		what = fmt.Sprintf("restart node %d", a.node)
	case actReloadAll:
		what = "plugin reload on every node"
	case actRole:
		what = fmt.Sprintf("node %d becomes %s", a.node, simRole(a.n))
	}
	if slices.ContainsFunc(a.lags, func(d time.Duration) bool { return d > 0 }) {
		lags := make([]string, len(a.lags))
		for i, d := range a.lags {
			lags[i] = d.String()
		}
		what += " [replication " + strings.Join(lags, " ") + "]"
	}
	return what
}

// run performs one step and lets everything it started settle.
func (s *sim) run(i int, a simAction) {
	s.mu.Lock()
	s.step, s.lags = i, a.lags
	s.eventf("step %d: %s", i, a)
	s.mu.Unlock()
	node := s.nodes[a.node%len(s.nodes)]
	switch a.kind {
	case actRead:
		s.reads(node, a)
	case actClock:
		time.Sleep(a.d)
	case actWrite, actRefresh, actProbe:
		s.other(node, a, i+1)
	case actDelete:
		hop := s.send(node, logical.DeleteOperation, configStorageKey, nil, i+1)
		s.countOutcome("config delete", hop.resp, hop.err)
	case actManus:
		s.manusDoes(a)
	case actFailover:
		s.failover(node)
	case actRestart:
		s.restart(node)
	case actReloadAll:
		for _, n := range s.nodes {
			s.restart(n)
		}
	case actRole:
		s.changeRole(node, simRole(a.n))
	}
	synctest.Wait()
	s.checkEndOfStep()
	s.stats.add("steps", 1)
}

// send sends a request to node as Vault would; a node that answers with the
// read-only error has the server send it on to the active node.
func (s *sim) send(node *simNode, op logical.Operation, path string, data map[string]any, tag int) simHop {
	ctx := context.WithValue(context.Background(), simActionKey{}, tag)
	hop := s.hop(ctx, node, op, path, data)
	if forwarded(hop.err) {
		s.stats.add("requests forwarded", 1)
		s.mu.Lock()
		active := s.nodes[s.active]
		s.mu.Unlock()
		next := s.hop(ctx, active, op, path, data)
		next.forwarded = true
		hop = next
	}
	return hop
}

// simHop is one node's handling of a request.
type simHop struct {
	node, inc int
	role      simRole
	informed  int // how much of the log had reached the node
	written   int // how much had been written
	start     time.Time
	forwarded bool
	resp      *logical.Response
	err       error
}

func (s *sim) hop(ctx context.Context, n *simNode, op logical.Operation, path string, data map[string]any) simHop {
	s.mu.Lock()
	h := simHop{node: n.id, inc: n.inc, role: n.role, informed: n.view.informed, written: len(s.log), start: time.Now()}
	if s.bursting {
		// The requests of a burst are concurrent: a read may see what
		// the others write, or not.
		h.informed = min(h.informed, s.burstLog)
	}
	b := n.b.Load()
	if path == tokenRefreshPath {
		s.refreshing[n.id] = true
	}
	s.mu.Unlock()
	h.resp, h.err = b.HandleRequest(ctx, &logical.Request{Operation: op, Path: path, Data: maps.Clone(data), Storage: n.view, MountPoint: "manus/"})
	if path == tokenRefreshPath {
		s.mu.Lock()
		delete(s.refreshing, n.id)
		s.mu.Unlock()
	}
	return h
}

func (s *sim) countOutcome(what string, resp *logical.Response, err error) {
	outcome := "ok"
	switch {
	case err != nil:
		outcome = "failed"
	case resp != nil && resp.IsError():
		outcome = "refused (400)"
	}
	s.stats.add(what+": "+outcome, 1)
	s.mu.Lock()
	s.eventf("  -> %s %s%s", what, outcome, errText(resp, err))
	s.mu.Unlock()
}

func errText(resp *logical.Response, err error) string {
	switch {
	case err != nil:
		return ": " + shorten(err.Error(), 160)
	case resp != nil && resp.IsError():
		return ": " + shorten(resp.Error().Error(), 160)
	}
	return ""
}

// simAnswer is one token read as the reader saw it, with what the
// invariants need from its start.
type simAnswer struct {
	asked     int
	askedRole simRole
	hop       simHop
	mustWork  string // why the read may not fail; "" when it may
	cfgAt     int    // how much of the log had been written when mustWork was judged
	token     string
	leased    bool
	ttl       time.Duration
	at        time.Time
	failure   string
}

// burstOther is the request a burst sends beside its readers, if any: a
// token/refresh, a status probe or a config write.
func (a simAction) burstOther() *simAction {
	if a.kind != actRead || a.n < 2 || a.v&2 == 0 {
		return nil
	}
	o := simAction{node: a.node, v: a.v >> 4}
	switch a.v >> 2 % 4 {
	case 0:
		o.kind = actRefresh
	case 1:
		o.kind = actProbe
	default:
		o.kind, o.n = actWrite, a.v>>4%numWriteKinds
	}
	return &o
}

// racy bursts start their requests all at once, so the scheduler
// interleaves what they do at one instant: a failure found there may not
// replay exactly (its trace is printed). Others start each request once the
// one before is blocked for good, waiting for the held mint or done.
func (a simAction) racy() bool { return a.v>>11&3 == 3 }

// reads sends one read, or a burst of concurrent requests (v&1: spread over
// the nodes; v&2: a burstOther among them) whose token requests are held
// until all of them are in.
func (s *sim) reads(node *simNode, a simAction) {
	if a.n <= 1 {
		s.checkAnswer(s.readOnce(node))
		return
	}
	s.stats.add("bursts of concurrent requests", 1)
	s.mu.Lock()
	s.holding, s.bursting, s.burstLog, s.held, s.release = true, true, len(s.log), 0, make(chan struct{})
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.bursting = false
		s.mu.Unlock()
	}()
	answers := make([]simAnswer, a.n)
	var wg sync.WaitGroup
	for i := range a.n {
		n := node
		if a.v&1 == 1 {
			n = s.nodes[(node.id+i)%len(s.nodes)]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if o := a.burstOther(); o != nil && i == 0 {
				s.stats.add("bursts with a "+[...]string{actRefresh: "token/refresh", actProbe: "status probe", actWrite: "config write"}[o.kind], 1)
				s.other(n, *o, s.step+1)
				return
			}
			answers[i] = s.readOnce(n)
		}()
		if !a.racy() {
			synctest.Wait()
		}
	}
	synctest.Wait() // every reader is in: in the held token request, or waiting for it
	s.mu.Lock()
	s.holding = false
	s.eventf("  %d token request(s) held while %d readers waited", s.held, a.n)
	close(s.release)
	s.mu.Unlock()
	wg.Wait()
	synctest.Wait()
	for _, ans := range answers {
		if ans.hop.start.IsZero() {
			continue // the burst's other request
		}
		s.checkAnswer(ans)
	}
}

// other is a burst's request that is not a read.
func (s *sim) other(n *simNode, o simAction, tag int) {
	switch o.kind {
	case actRefresh:
		s.refresh(n, tag)
	case actProbe:
		s.probe(n, tag)
	case actWrite:
		s.writeConfig(n, o, tag)
	}
}

func (s *sim) readOnce(node *simNode) simAnswer {
	s.mu.Lock()
	ans := simAnswer{asked: node.id, askedRole: node.role, mustWork: s.mustAnswerLocked(node), cfgAt: len(s.log)}
	s.mu.Unlock()
	hop := s.send(node, logical.ReadOperation, tokenPath, nil, 0)
	resp, err := hop.resp, hop.err
	ans.hop, ans.at = hop, time.Now()
	switch {
	case err != nil:
		ans.failure = err.Error()
	case resp == nil || resp.IsError():
		ans.failure = strings.TrimPrefix(errText(resp, nil), ": ")
	case resp.Secret != nil && !hop.role.registersLeases():
		ans.failure = fmt.Sprintf("the server could not register the lease on node %d (%s): %s", hop.node, hop.role, logical.ErrReadOnly)
	default:
		ans.token, _ = resp.Data["access_token"].(string)
		if resp.Secret != nil {
			ans.leased, ans.ttl = true, resp.Secret.TTL
		}
	}
	return ans
}

func (s *sim) writeConfig(node *simNode, a simAction, tag int) {
	s.mu.Lock()
	data := s.writeDataLocked(a)
	if secret, ok := data["client_secret"].(string); ok {
		host := simHostManus
		if u, ok := data["base_url"].(string); ok {
			host = strings.TrimPrefix(u, "https://")
		}
		s.confirmed[[2]string{host, secret}] = true
	}
	s.writes[tag] = data
	var op logical.Operation = logical.UpdateOperation
	if node.view.configLocked() == nil {
		op = logical.CreateOperation
	}
	s.mu.Unlock()
	hop := s.send(node, op, configStorageKey, data, tag)
	s.countOutcome("config write "+simWriteNames[a.n], hop.resp, hop.err)
}

// changesUpstream reports whether data, written over stored, changes how
// tokens are minted: anything but leased_reads.
func changesUpstream(stored *manusConfig, data map[string]any) bool {
	if stored == nil {
		return true
	}
	seconds := func(d time.Duration) int { return int(d / time.Second) }
	for field, now := range map[string]any{
		"client_id": stored.ClientID, "client_secret": stored.ClientSecret, "base_url": stored.BaseURL,
		"request_timeout": seconds(stored.RequestTimeout), "refresh_threshold": seconds(stored.RefreshThreshold),
	} {
		if v, ok := data[field]; ok && v != now {
			return true
		}
	}
	return false
}

// writeDataLocked is what an operator would write for a's kind, over the
// config stored now.
func (s *sim) writeDataLocked(a simAction) map[string]any {
	stored := s.currentConfigLocked()
	host := []string{simHostManus, simHostProxy}[a.v>>2&1]
	data := map[string]any{}
	switch a.n {
	case writeFull:
		data = map[string]any{
			"client_id": simOwnerID, "client_secret": s.ownerSecret, "base_url": simBaseURL(host),
			"leased_reads": a.v>>3&1 == 0, "request_timeout": simTimeouts[a.v>>4%3], "refresh_threshold": simThresholds[a.v>>6%3],
		}
	case writeRotate:
		data["client_secret"] = s.ownerSecret
		if a.v&4 != 0 {
			data["base_url"] = simBaseURL(simHostManus)
			if stored != nil && stored.BaseURL == simBaseURL(simHostProxy) {
				data["base_url"] = stored.BaseURL
			}
		}
	case writeMove:
		data["base_url"] = simBaseURL(host)
	case writeTimeout:
		data["request_timeout"] = simTimeouts[a.v>>2%3]
	case writeThreshold:
		data["refresh_threshold"] = simThresholds[a.v>>2%3]
	case writeReadMode:
		data["leased_reads"] = stored == nil || !stored.LeasedReads
	case writeSame:
		if stored == nil {
			return map[string]any{"client_id": simOwnerID, "client_secret": s.ownerSecret}
		}
		data = map[string]any{
			"client_id": stored.ClientID, "client_secret": stored.ClientSecret, "base_url": stored.BaseURL,
			"leased_reads": stored.LeasedReads, "request_timeout": int(stored.RequestTimeout / time.Second), "refresh_threshold": int(stored.RefreshThreshold / time.Second),
		}
	case writePlant:
		data = map[string]any{"client_id": simAttackerID, "client_secret": s.newSecret("planted"), "base_url": simBaseURL(simHostCapture)}
	case writePlantNoSecret:
		data["base_url"] = simBaseURL(simHostCapture)
	case writeStaleSecret:
		data = map[string]any{"client_id": simOwnerID, "client_secret": "stale-" + s.ownerSecret, "base_url": simBaseURL(host)}
	}
	if a.v&3 == 3 {
		data["verify_credentials"] = false
	}
	return data
}

func (s *sim) probe(node *simNode, tag int) {
	hop := s.send(node, logical.ReadOperation, statusPath, map[string]any{"probe": true}, tag)
	s.countOutcome("status probe", hop.resp, hop.err)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, token := range s.probeRejects[tag] {
		s.rejections = append(s.rejections, simRejection{token: token, index: len(s.log), at: time.Now()})
	}
	delete(s.probeRejects, tag)
}

func (s *sim) refresh(node *simNode, tag int) {
	hop := s.send(node, logical.UpdateOperation, tokenRefreshPath, nil, tag)
	resp, err := hop.resp, hop.err
	s.countOutcome("token/refresh", resp, err)
	if hop.role != roleActive {
		return
	}
	// A refresh that got past its bounds ended the cache's hold-offs
	// (refreshOnRequest); one kept by them changed nothing.
	kept := err == nil && resp != nil && resp.Data["replaced"] == false
	asked := err != nil && strings.Contains(err.Error(), "Manus asked not to be asked again")
	if kept || asked {
		return
	}
	s.mu.Lock()
	for key, k := range s.caches {
		if key.node == hop.node && key.inc == hop.inc {
			k.failedMints, k.rejections = 0, 0
		}
	}
	s.mu.Unlock()
}

func (s *sim) manusDoes(a simAction) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.add("Manus: "+simManusNames[a.n], 1)
	switch a.n {
	case manusFail:
		count := 1 + a.v%3
		for range count {
			f := standin.Unavailable()
			if a.v&4 != 0 {
				f = standin.Fault{Status: http.StatusBadRequest, Body: `{"error":"temporarily_unavailable"}`}
			}
			s.manus.FailNext(f)
		}
		s.queuedFaults += count
	case manusLimit:
		s.manus.FailNext(standin.Fault{Status: http.StatusTooManyRequests, Body: `{"code":"RESOURCE_EXHAUSTED","message":"slow down"}`,
			Header: map[string]string{"Retry-After": fmt.Sprint(simRetryAfters[a.v%len(simRetryAfters)])}})
		s.queuedFaults++
	case manusStall:
		s.manus.FailNext(standin.Fault{Stall: 40 * time.Second})
		s.queuedFaults++
	case manusSlow:
		s.manus.FailNext(standin.Fault{Stall: 2300 * time.Millisecond})
		s.queuedFaults++
	case manusOutage:
		f := standin.Unavailable()
		if a.v&1 == 1 {
			f = standin.Fault{Stall: time.Hour}
		}
		s.manus.SetOutage(f)
		s.outage = true
	case manusRecover:
		s.manus.ClearOutage()
		s.outage = false
	case manusRejectAll:
		s.manus.RejectAllTokens(a.v&1 == 1)
	case manusRevoke:
		s.manus.RevokeTokensOf(simOwnerID)
	case manusRotate:
		s.ownerSecret = s.newSecret("owner")
		s.setClient(simOwnerID, s.ownerSecret)
	case manusDelete:
		delete(s.clients, simOwnerID)
		s.manus.DeleteClient(simOwnerID)
	case manusRestore:
		s.setClient(simOwnerID, s.ownerSecret)
	case manusLifetime:
		s.lifetime = simLifetimes[a.v%len(simLifetimes)]
		s.manus.SetLifetime(s.lifetime)
	}
}

// failover makes node the active node: it has every write (a Raft leader
// does), and Vault sets the mount up again on both nodes whose role changed.
func (s *sim) failover(node *simNode) {
	s.mu.Lock()
	old := s.nodes[s.active]
	if node == old {
		node = s.nodes[(old.id+1)%len(s.nodes)]
	}
	old.role, node.role = node.role, roleActive
	if old.role == roleSilent {
		old.role = roleStandby
	}
	s.active = node.id
	node.view.applyLocked(len(s.log))
	node.view.informed = len(s.log)
	s.eventf("  node %d is active, node %d %s", node.id, old.id, old.role)
	s.mu.Unlock()
	s.stats.add("failovers", 1)
	s.tearDown(old)
	s.tearDown(node)
	s.setUp(node)
	s.setUp(old)
}

func (s *sim) restart(n *simNode) {
	s.stats.add("restarts and reloads", 1)
	s.tearDown(n)
	s.setUp(n)
}

func (s *sim) changeRole(n *simNode, r simRole) {
	s.mu.Lock()
	if n.id == s.active || r == roleActive {
		s.mu.Unlock()
		return
	}
	n.role = r
	s.mu.Unlock()
	s.stats.add("role changes", 1)
	s.stats.add("role seen: "+r.String(), 1)
	s.tearDown(n)
	s.setUp(n)
}

// currentConfigLocked is the config the log ends with (nil: none).
func (s *sim) currentConfigLocked() *manusConfig {
	for i := len(s.log) - 1; i >= 0; i-- {
		if s.log[i].key == configStorageKey {
			return s.log[i].cfg
		}
	}
	return nil
}

// currentTokenLocked is the token the log ends with (nil: none).
func (s *sim) currentTokenLocked() *storedToken {
	for i := len(s.log) - 1; i >= 0; i-- {
		if s.log[i].key == tokenStorageKey {
			return s.log[i].tok
		}
	}
	return nil
}
