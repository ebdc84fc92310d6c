package auth

// CacheStats counts the bearer-token lookups of Sessions.Principal since
// it was made: Hits were answered from this instance's cache, Misses read
// Postgres (a first use on this instance, an entry older than CacheTTL, or
// an unknown token). Counters only grow.
type CacheStats struct {
	Hits, Misses uint64
}

// CacheStats returns the session cache's counters. It is safe for
// concurrent use.
func (s *Sessions) CacheStats() CacheStats {
	return CacheStats{Hits: s.hits.Load(), Misses: s.misses.Load()}
}
