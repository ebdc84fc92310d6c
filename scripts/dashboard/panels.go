package main

import "strings"

// series is one line of a panel: a value per sample (NaN: no point).
type series struct {
	name   string
	values []float64
}

// panel is one chart: the queries of a panel of docs/grafana-sluice.json.
type panel struct {
	title string
	unit  string
	lines func(samples []sample) []series
}

// panels are the dashboard panels rendered, in reading order.
func panels() []panel {
	last := func(s []sample) sample { return s[len(s)-1] }
	return []panel{
		{"RPCs by code", "calls/s", func(s []sample) []series {
			var out []series
			for _, code := range last(s).values("sluice_rpc_requests_total", "code", nil) {
				out = append(out, series{code, rate(s, "sluice_rpc_requests_total", labels{"code": code})})
			}
			return out
		}},
		{"RPC p99 by procedure", "ms", func(s []sample) []series {
			var out []series
			for _, proc := range last(s).values("sluice_rpc_duration_seconds", "procedure", nil) {
				q := quantile(s, 0.99, "sluice_rpc_duration_seconds", labels{"procedure": proc}, 1000)
				out = append(out, series{proc[strings.LastIndex(proc, "/")+1:], q})
			}
			return out
		}},
		{"Streams open", "streams", func(s []sample) []series {
			return []series{{"open", gauge(s, "sluice_streams_open", nil, 1)}}
		}},
		{"Deliveries and coalesced events", "events/s", func(s []sample) []series {
			return []series{
				{"deliveries", rate(s, "sluice_stream_deliveries_total", nil)},
				{"coalesced", rate(s, "sluice_stream_coalesced_events_total", nil)},
				{"overflows", rate(s, "sluice_stream_overflows_total", nil)},
			}
		}},
		{"Time to last delivery (commit → last stream)", "ms", func(s []sample) []series {
			return []series{
				{"p50", quantile(s, 0.5, "sluice_fanout_last_delivery_seconds", nil, 1000)},
				{"p99", quantile(s, 0.99, "sluice_fanout_last_delivery_seconds", nil, 1000)},
			}
		}},
		{"Postgres pool", "connections", func(s []sample) []series {
			return []series{
				{"acquired", gauge(s, "sluice_pg_pool_conns_acquired", nil, 1)},
				{"idle", gauge(s, "sluice_pg_pool_conns_idle", nil, 1)},
			}
		}},
		{"Sessions", "sessions, lookups/s", func(s []sample) []series {
			return []series{
				{"live", gauge(s, "sluice_sessions_live", nil, 1)},
				{"cache hits/s", rate(s, "sluice_session_cache_hits_total", nil)},
				{"cache misses/s", rate(s, "sluice_session_cache_misses_total", nil)},
			}
		}},
		{"Memory", "MiB", func(s []sample) []series {
			return []series{
				{"resident", gauge(s, "process_resident_memory_bytes", nil, 1.0/(1<<20))},
				{"Go heap in use", gauge(s, "go_memstats_heap_inuse_bytes", nil, 1.0/(1<<20))},
			}
		}},
	}
}
