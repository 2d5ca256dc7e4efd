package manus

import (
	"container/heap"
	"math/rand/v2"
	"testing"
	"time"
)

// Upstream economy: how many mints a mount costs Manus per hour under heavy
// readers and under a Vault Agent fleet, on an injected clock. The physical
// floor is one mint per token lifetime (one an hour); the plugin refreshes
// refresh_threshold (10 minutes) early so Agents never hold a token near its
// end, which puts the steady state at one mint per 50 minutes plus the read
// that notices it: a ratio of about 1.2 to the floor, whatever the number of
// readers. Figures: BENCHMARKS.md.

type economyResult struct {
	mints        int
	reads        int
	simulated    time.Duration
	mintsPerHour float64
	floorRatio   float64 // mints over one-per-token-lifetime
}

func economyOf(e *testEnv, simulated time.Duration, reads int) economyResult {
	mints := e.manus.Mints()
	perHour := float64(mints) / simulated.Hours()
	return economyResult{
		mints: mints, reads: reads, simulated: simulated,
		mintsPerHour: perHour,
		floorRatio:   perHour / 1.0, // one-hour tokens: the floor is 1 mint/h
	}
}

// simulateConcurrentReaders advances the clock by step for the simulated
// duration, and at every step runs readers concurrent reads.
func simulateConcurrentReaders(tb testing.TB, mode readMode, readers int, simulated, step time.Duration) economyResult {
	e := newTestEnv(tb)
	e.configure(mode.config())
	reads := 0
	for elapsed := time.Duration(0); elapsed < simulated; elapsed += step {
		e.concurrentReads(readers)
		reads += readers
		e.clock.Advance(step)
	}
	return economyOf(e, simulated, reads)
}

// agent is one simulated Vault Agent rendering manus/token.
type agent struct {
	next      time.Time // its next read
	token     string    // the token it holds
	expiresAt time.Time // and that token's expiry
	index     int
}

type agentQueue []*agent

func (q agentQueue) Len() int           { return len(q) }
func (q agentQueue) Less(i, j int) bool { return q[i].next.Before(q[j].next) }
func (q agentQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i]; q[i].index, q[j].index = i, j }
func (q *agentQueue) Push(x any)        { a := x.(*agent); a.index = len(*q); *q = append(*q, a) }
func (q *agentQueue) Pop() any {
	old := *q
	a := old[len(old)-1]
	*q = old[:len(old)-1]
	return a
}

// simulateAgentFleet runs agents that re-read the token as consul-template
// does: for a leased, non-renewable secret at a uniformly random 85-95% of
// the lease (lease_renewal_threshold 0.90 +/- 0.05); for a non-leased one
// with rotation_period, exactly ttl+1 seconds later. Agents start at random
// points in the first hour. It fails if any agent is still holding a token
// past its expiry when it re-reads, or gets back the token it held.
func simulateAgentFleet(tb testing.TB, mode readMode, agents int, simulated time.Duration) economyResult {
	e := newTestEnv(tb)
	e.configure(mode.config())
	rng := rand.New(rand.NewPCG(7, 11))
	start := e.clock.Now()
	queue := make(agentQueue, 0, agents)
	for range agents {
		heap.Push(&queue, &agent{next: start.Add(time.Duration(rng.Int64N(int64(time.Hour))))})
	}
	reads := 0
	end := start.Add(simulated)
	for queue.Len() > 0 {
		a := heap.Pop(&queue).(*agent)
		if !a.next.Before(end) {
			continue
		}
		e.clock.Advance(a.next.Sub(e.clock.Now()))
		if !a.expiresAt.IsZero() && !a.expiresAt.After(a.next) {
			tb.Fatalf("an agent held an expired token until its re-read at %s", a.next.Sub(start))
		}
		resp := e.mustReadToken()
		reads++
		if accessTokenOf(resp) == a.token {
			tb.Fatalf("an agent's re-read at %s got back the token it held", a.next.Sub(start))
		}
		a.token = accessTokenOf(resp)
		a.expiresAt, _ = time.Parse(time.RFC3339, resp.Data["expires_at"].(string))
		if mode.leased {
			fraction := 0.85 + 0.10*rng.Float64()
			a.next = a.next.Add(time.Duration(float64(resp.Secret.TTL) * fraction))
		} else {
			a.next = a.next.Add(mode.holdFor(tb, resp))
		}
		heap.Push(&queue, a)
	}
	return economyOf(e, simulated, reads)
}

// TestEconomyIndependentOfReaderCount: the mint count depends on time only,
// not on how many read.
func TestEconomyIndependentOfReaderCount(t *testing.T) {
	for _, mode := range readModes {
		t.Run(mode.name, func(t *testing.T) {
			few := simulateConcurrentReaders(t, mode, 1, 6*time.Hour, 2*time.Minute)
			many := simulateConcurrentReaders(t, mode, 200, 6*time.Hour, 2*time.Minute)
			// Minted at 0, then whenever 600s or less are left: every
			// 3000s, a whole number of 2-minute steps. Reads happen at
			// 0 .. 6h-2m.
			want := 1 + int((6*time.Hour-2*time.Minute)/(3000*time.Second))
			if few.mints != want || many.mints != want {
				t.Fatalf("mints over 6h: %d with 1 reader, %d with 200; want %d for both", few.mints, many.mints, want)
			}
		})
	}
}

func TestEconomyAgentFleet(t *testing.T) {
	for _, mode := range readModes {
		t.Run(mode.name, func(t *testing.T) {
			simulated := 6 * time.Hour
			r := simulateAgentFleet(t, mode, 100, simulated)
			// At most the first mint plus one per 50-minute refresh
			// interval, and at least one per token lifetime.
			most := 1 + int(simulated/(50*time.Minute))
			least := int(simulated / time.Hour)
			if r.mints > most || r.mints < least {
				t.Fatalf("100 Agents over %s cost %d mints; want %d to %d", simulated, r.mints, least, most)
			}
		})
	}
}

// BenchmarkEconomyConcurrentReaders: 1000 concurrent readers every simulated
// 2 minutes for 24 hours, in each read mode.
func BenchmarkEconomyConcurrentReaders(b *testing.B) {
	for _, mode := range readModes {
		b.Run(mode.name, func(b *testing.B) {
			var r economyResult
			for b.Loop() {
				r = simulateConcurrentReaders(b, mode, 1000, 24*time.Hour, 2*time.Minute)
			}
			reportEconomy(b, r)
		})
	}
}

// BenchmarkEconomyAgentFleet: 100 Agents for 24 simulated hours, in each
// read mode.
func BenchmarkEconomyAgentFleet(b *testing.B) {
	for _, mode := range readModes {
		b.Run(mode.name, func(b *testing.B) {
			var r economyResult
			for b.Loop() {
				r = simulateAgentFleet(b, mode, 100, 24*time.Hour)
			}
			reportEconomy(b, r)
		})
	}
}

func reportEconomy(b *testing.B, r economyResult) {
	b.ReportMetric(float64(r.mints), "mints")
	b.ReportMetric(r.mintsPerHour, "mints/h")
	b.ReportMetric(r.floorRatio, "x-floor")
	b.ReportMetric(float64(r.reads)/r.simulated.Hours(), "reads/h")
	b.ReportMetric(0, "ns/op") // wall time is not the point here
}
