package main

import (
	"fmt"
	"io"
	"math"
)

// load is a deployment to size.
type load struct {
	name    string
	users   float64 // connected streams
	writes  float64 // per second
	fanout  float64 // average streams a write reaches
	example string
}

// Assumptions of the model, stated in its output.
const (
	coresPerInstance = 8
	cpuTarget        = 0.6 // of the cores, leaving room for bursts
	memPerInstanceGB = 16
	memTarget        = 0.7
)

// printModel prints the capacity tables of docs/SCALING.md from s.
func printModel(w io.Writer, s *Summary) {
	cpuDel := math.Max(s.Workloads["1000x4"]["sluice"].CPUMsPer1000Del, s.Workloads["1000r20"]["sluice"].CPUMsPer1000Del) // s per 1000 = ms per delivery
	cpuWrite := s.Sluice["cpu_ms_per_write_w1"] / 1000                                                                    // s per write
	kb := s.Idle["sluice"]["5000"]
	pgPerWrite := s.Pgbench["tps_c32"] / s.Sluice["writes_per_s_w32"]
	fmt.Fprintf(w, "Inputs (run %s, commit %s):\n\n", s.Run, s.Commit)
	fmt.Fprintf(w, "| input | value | from |\n| --- | ---: | --- |\n")
	fmt.Fprintf(w, "| CPU per delivery | %.0f µs | the higher of 1000×4 (saturated) and 1000@20 (idle between writes), HTTP/2 |\n", cpuDel*1000)
	fmt.Fprintf(w, "| CPU per write (server) | %.2f ms | 1 writer, no subscribers |\n", cpuWrite*1000)
	fmt.Fprintf(w, "| memory per idle stream | %.0f KB | 5000 idle streams, one connection each |\n", kb)
	fmt.Fprintf(w, "| Postgres work per write | %.1f pgbench UPDATEs | pgbench tps ÷ Sluice writes/s, 32 clients, same cluster |\n", pgPerWrite)
	fmt.Fprintf(w, "\nAssumed instance: %d cores used to %.0f %%, %d GiB used to %.0f %%.\n\n", coresPerInstance, cpuTarget*100, memPerInstanceGB, memTarget*100)
	fmt.Fprintf(w, "| load | deliveries/s | cores | memory | sluiced instances | NATS messages/s (at most) | Postgres capacity needed |\n")
	fmt.Fprintf(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, l := range []load{
		{"chat, 1M users", 1e6, 10e3, 20, "10k writes/s, each seen by 20 online members"},
		{"broadcast, 1M users", 1e6, 100, 10e3, "100 writes/s, each seen by 10k"},
		{"team app, 100k users", 100e3, 1e3, 50, "1k writes/s, each seen by 50"},
	} {
		del := l.writes * l.fanout
		cores := del*cpuDel/1000 + l.writes*cpuWrite
		memGB := l.users * kb / 1e6
		inst := math.Max(math.Ceil(cores/(coresPerInstance*cpuTarget)), math.Ceil(memGB/(memPerInstanceGB*memTarget)))
		inst = math.Max(inst, 2) // never one
		nats := l.writes * (1 + math.Min(inst, l.fanout))
		fmt.Fprintf(w, "| %s (%s) | %s | %.0f | %.0f GB | %.0f | %s | %s pgbench tps |\n",
			l.name, l.example, short(del), cores, memGB, inst, short(nats), short(l.writes*pgPerWrite))
	}
}
