package manus

import "time"

// holdOff is a run of failures in a row and how long it holds the next try
// off: failed mints, tokens Manus rejected, and writes storage refused as
// read-only all keep one.
type holdOff struct {
	count int       // in a row
	last  time.Time // the latest
	until time.Time // no try before this
}

// note records one more failure at now; wait gives the hold-off after the
// nth in a row.
func (h *holdOff) note(now time.Time, wait func(n int) time.Duration) {
	h.count++
	h.last = now
	h.until = now.Add(wait(h.count))
}

// inForce reports whether the next try must still wait at now.
func (h holdOff) inForce(now time.Time) bool { return now.Before(h.until) }

// cappedDoubling is first doubled n times (n <= 0: first), at most limit.
// The loop stops at the limit, so no n can overflow it.
func cappedDoubling(first, limit time.Duration, n int) time.Duration {
	d := first
	for ; n > 0 && d < limit; n-- {
		d *= 2
	}
	return min(d, limit)
}
