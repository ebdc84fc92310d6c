// Command benchreport turns the JSON results of a side-by-side run (Sluice
// and deepstream.io on the same workloads) into what the docs show: a
// compact summary committed under docs/bench/, SVG plots for
// docs/BENCHMARKS.md, and the capacity model tables of docs/SCALING.md.
//
//	go run ./scripts/benchreport -results .bench/results/<run> -summary docs/bench/<date>.json
//	go run ./scripts/benchreport -summary docs/bench/<date>.json -svg docs/img
//	go run ./scripts/benchreport -summary docs/bench/<date>.json -model
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

// Summary is the medians of one side-by-side run, by workload and peer.
type Summary struct {
	Run       string                        `json:"run"`
	Commit    string                        `json:"commit,omitempty"`
	Workloads map[string]map[string]Result  `json:"workloads"`          // workload -> "sluice"|"deepstream" -> medians
	Idle      map[string]map[string]float64 `json:"idle_kb_per_stream"` // peer -> "1000"/"5000" -> KB
	Pgbench   map[string]float64            `json:"pgbench"`            // "tps_c1", "p50_ms_c1", "tps_c32", …
	Sluice    map[string]float64            `json:"sluice_writes"`      // "writes_per_s_w1", "cpu_ms_per_write_w1", "rpc_p50_ms_w1", "writes_per_s_w32"
}

// Result is the medians of one workload for one peer.
type Result struct {
	Subs            int     `json:"subs"`
	WritesPerS      float64 `json:"writes_per_s"`
	DeliveriesPerS  float64 `json:"deliveries_per_s"`
	DeliveryP50Ms   float64 `json:"delivery_p50_ms"`
	DeliveryP99Ms   float64 `json:"delivery_p99_ms"`
	CPUMsPer1000Del float64 `json:"cpu_s_per_1000_deliveries"`
	PeakRSSMB       float64 `json:"peak_rss_mb"`
	Pairs           int     `json:"pairs"`
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("benchreport", flag.ContinueOnError)
	results := fs.String("results", "", "a side-by-side results directory to summarize")
	summary := fs.String("summary", "", "the summary JSON to write (with -results) or read")
	svg := fs.String("svg", "", "write the plots to this directory")
	model := fs.Bool("model", false, "print the capacity model tables (markdown)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *summary == "" {
		return errors.New("-summary is required")
	}
	var s *Summary
	var err error
	if *results != "" {
		if s, err = summarize(*results); err != nil {
			return err
		}
		b, _ := json.MarshalIndent(s, "", "  ")
		if err := os.WriteFile(*summary, append(b, '\n'), 0o644); err != nil {
			return err
		}
	} else {
		b, err := os.ReadFile(*summary)
		if err != nil {
			return err
		}
		s = &Summary{}
		if err := json.Unmarshal(b, s); err != nil {
			return fmt.Errorf("%s: %w", *summary, err)
		}
	}
	if *svg != "" {
		if err := plots(s, *svg); err != nil {
			return err
		}
	}
	if *model {
		printModel(stdout, s)
	}
	return nil
}

// runFile is the part of a run's JSON the summary reads.
type runFile struct {
	Meta struct {
		Peer string `json:"peer"`
		Subs int    `json:"subs"`
	} `json:"meta"`
	Writes struct {
		Completed float64 `json:"completed"`
		PerS      float64 `json:"per_s"`
	} `json:"writes"`
	RPC struct {
		P50 float64 `json:"p50_ms"`
	} `json:"rpc_rtt"`
	Delivery struct {
		PerS float64 `json:"per_s"`
		P50  float64 `json:"p50_ms"`
		P99  float64 `json:"p99_ms"`
	} `json:"delivery"`
	Server struct {
		HWM float64 `json:"vm_hwm_mb"`
	} `json:"server"`
	CPU      float64 `json:"server_cpu_s"`
	CPUPer1k float64 `json:"server_cpu_s_per_1000_deliveries"`
	Rows     []struct {
		Target int     `json:"target"`
		KB     float64 `json:"kb_per_sub"`
	} `json:"rows"`
	// pgbench
	Kind    string  `json:"kind"`
	Clients int     `json:"clients"`
	TPS     float64 `json:"tps"`
	P50     float64 `json:"p50_ms"`
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// summarize reads every run of dir: files named <peer>-<workload>-<pair>.json.
func summarize(dir string) (*Summary, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	type key struct{ workload, peer string }
	runs := map[key][]runFile{}
	s := &Summary{Run: filepath.Base(dir), Workloads: map[string]map[string]Result{}, Idle: map[string]map[string]float64{},
		Pgbench: map[string]float64{}, Sluice: map[string]float64{}}
	if b, err := os.ReadFile(filepath.Join(dir, "run-info.json")); err == nil {
		var info struct {
			Commit string `json:"sluice_commit"`
		}
		_ = json.Unmarshal(b, &info)
		s.Commit = info.Commit
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		parts := strings.Split(name, "-")
		if len(parts) < 3 {
			continue
		}
		peer, workload := parts[0], strings.Join(parts[1:len(parts)-1], "-")
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var r runFile
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		runs[key{workload, peer}] = append(runs[key{workload, peer}], r)
	}
	peerName := map[string]string{"sl": "sluice", "ds": "deepstream", "pg": "postgres"}
	for k, rs := range runs {
		peer := peerName[k.peer]
		col := func(f func(r runFile) float64) float64 {
			var xs []float64
			for _, r := range rs {
				xs = append(xs, f(r))
			}
			return median(xs)
		}
		switch {
		case k.workload == "idle":
			s.Idle[peer] = map[string]float64{}
			for _, target := range []int{1000, 5000} {
				s.Idle[peer][fmt.Sprint(target)] = col(func(r runFile) float64 {
					for _, row := range r.Rows {
						if row.Target == target {
							return row.KB
						}
					}
					return math.NaN()
				})
			}
		case k.peer == "pg":
			c := strings.TrimPrefix(k.workload, "pgbench_")
			s.Pgbench["tps_"+c] = col(func(r runFile) float64 { return r.TPS })
			s.Pgbench["p50_ms_"+c] = col(func(r runFile) float64 { return r.P50 })
		case strings.HasPrefix(k.workload, "pgbench_"):
			w := strings.TrimPrefix(k.workload, "pgbench_")
			s.Sluice["writes_per_s_"+w] = col(func(r runFile) float64 { return r.Writes.PerS })
			s.Sluice["rpc_p50_ms_"+w] = col(func(r runFile) float64 { return r.RPC.P50 })
			s.Sluice["cpu_ms_per_write_"+w] = col(func(r runFile) float64 { return 1000 * r.CPU / r.Writes.Completed })
		default:
			if s.Workloads[k.workload] == nil {
				s.Workloads[k.workload] = map[string]Result{}
			}
			s.Workloads[k.workload][peer] = Result{
				Subs:            rs[0].Meta.Subs,
				WritesPerS:      col(func(r runFile) float64 { return r.Writes.PerS }),
				DeliveriesPerS:  col(func(r runFile) float64 { return r.Delivery.PerS }),
				DeliveryP50Ms:   col(func(r runFile) float64 { return r.Delivery.P50 }),
				DeliveryP99Ms:   col(func(r runFile) float64 { return r.Delivery.P99 }),
				CPUMsPer1000Del: col(func(r runFile) float64 { return r.CPUPer1k }),
				PeakRSSMB:       col(func(r runFile) float64 { return r.Server.HWM }),
				Pairs:           len(rs),
			}
		}
	}
	return s, nil
}
