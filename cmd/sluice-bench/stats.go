package main

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// summary is the exact distribution of a set of latency samples.
type summary struct {
	n                  int
	p50, p90, p99, max time.Duration
}

// summarize sorts samples in place and returns their exact percentiles
// (nearest rank). An empty set gives the zero summary.
func summarize(samples []time.Duration) summary {
	if len(samples) == 0 {
		return summary{}
	}
	slices.Sort(samples)
	return summary{
		n:   len(samples),
		p50: percentile(samples, 50),
		p90: percentile(samples, 90),
		p99: percentile(samples, 99),
		max: samples[len(samples)-1],
	}
}

// percentile returns the nearest-rank p-th percentile of sorted, the
// smallest sample that at least p percent of the samples do not exceed.
// sorted must be sorted ascending and non-empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// ms formats d in milliseconds with enough digits for sub-millisecond
// latencies.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

// keyTrack checks the versions one stream delivers for one record key:
// after the snapshot every live version must be exactly one more than the
// last. It is owned by one goroutine.
type keyTrack struct {
	last int64 // the highest version seen, 0 for none

	delivered       int64 // new versions seen live (after Synced)
	missed          int64 // versions skipped without a coalesced mark
	missedCoalesced int64 // versions skipped by an event marked coalesced
	duplicate       int64 // live versions at or below one already seen
}

// outcome says what a live version was to a keyTrack.
type outcome int

const (
	inOrder outcome = iota // exactly last+1
	gap                    // newer than last+1: versions were skipped
	stale                  // not newer than last: a duplicate
)

// snapshot records the version a stream started from.
func (k *keyTrack) snapshot(version int64) {
	k.last = max(k.last, version)
}

// observe checks one live version and moves the cursor forward.
func (k *keyTrack) observe(version int64, coalesced bool) outcome {
	switch {
	case version <= k.last:
		k.duplicate++
		return stale
	case version == k.last+1:
		k.delivered++
		k.last = version
		return inOrder
	default:
		skipped := version - k.last - 1
		if coalesced {
			k.missedCoalesced += skipped
		} else {
			k.missed += skipped
		}
		k.delivered++
		k.last = version
		return gap
	}
}
