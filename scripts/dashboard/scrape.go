package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// sample is one scrape of /metrics.
type sample struct {
	at   time.Duration // since the recorder started
	fams map[string]*dto.MetricFamily
}

// recorder scrapes /metrics at a fixed interval.
type recorder struct {
	url     string
	every   time.Duration
	start   time.Time
	samples []sample // read only after run returned
}

func newRecorder(base string, every time.Duration) *recorder {
	return &recorder{url: base + "/metrics", every: every, start: time.Now()}
}

// run scrapes until ctx ends; it returns ctx's error or a failed scrape's.
func (r *recorder) run(ctx context.Context) error {
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		if err := r.scrape(ctx); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (r *recorder) scrape(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("scrape: %w", err)
	}
	defer res.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		return fmt.Errorf("parse /metrics: %w", err)
	}
	r.samples = append(r.samples, sample{at: time.Since(r.start), fams: fams})
	return nil
}

// labels is a label filter: every pair must match.
type labels map[string]string

func matches(m *dto.Metric, want labels) bool {
	for k, v := range want {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == k && l.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// sum is the sum of the matching counters or gauges in s (NaN if none).
func (s sample) sum(name string, want labels) float64 {
	f := s.fams[name]
	if f == nil {
		return math.NaN()
	}
	total, n := 0.0, 0
	for _, m := range f.GetMetric() {
		if !matches(m, want) {
			continue
		}
		n++
		switch {
		case m.GetCounter() != nil:
			total += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			total += m.GetGauge().GetValue()
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return total
}

// values returns the label values of name's samples matching want.
func (s sample) values(name, by string, want labels) []string {
	var out []string
	for _, m := range s.fams[name].GetMetric() {
		if matches(m, want) && !slices.Contains(out, label(m, by)) {
			out = append(out, label(m, by))
		}
	}
	sort.Strings(out)
	return out
}

// buckets sums the matching histograms' cumulative buckets by bound.
func (s sample) buckets(name string, want labels) map[float64]float64 {
	out := map[float64]float64{}
	for _, m := range s.fams[name].GetMetric() {
		if !matches(m, want) || m.GetHistogram() == nil {
			continue
		}
		for _, b := range m.GetHistogram().GetBucket() {
			if !math.IsInf(b.GetUpperBound(), 1) { // +Inf is the sample count, below
				out[b.GetUpperBound()] += float64(b.GetCumulativeCount())
			}
		}
		out[math.Inf(1)] += float64(m.GetHistogram().GetSampleCount())
	}
	return out
}

// window is the span rates and quantiles are taken over, like [5s].
const window = 5 * time.Second

// back returns the index of the last sample at least window before i, or
// -1.
func back(samples []sample, i int) int {
	for j := i - 1; j >= 0; j-- {
		if samples[i].at-samples[j].at >= window {
			return j
		}
	}
	return -1
}

// rate is rate(name{want}[5s]) summed, at every sample.
func rate(samples []sample, name string, want labels) []float64 {
	out := make([]float64, len(samples))
	for i := range samples {
		j := back(samples, i)
		if j < 0 {
			out[i] = math.NaN()
			continue
		}
		// A counter not exported yet (no call of that kind so far) is 0.
		d := orZero(samples[i].sum(name, want)) - orZero(samples[j].sum(name, want))
		out[i] = math.Max(d, 0) / (samples[i].at - samples[j].at).Seconds()
	}
	return out
}

func orZero(v float64) float64 {
	if math.IsNaN(v) {
		return 0
	}
	return v
}

// gauge is the summed gauge at every sample, scaled.
func gauge(samples []sample, name string, want labels, scale float64) []float64 {
	out := make([]float64, len(samples))
	for i, s := range samples {
		out[i] = s.sum(name, want) * scale
	}
	return out
}

// quantile is histogram_quantile(q, rate(name_bucket{want}[5s])), scaled;
// NaN where nothing was observed in the window.
func quantile(samples []sample, q float64, name string, want labels, scale float64) []float64 {
	out := make([]float64, len(samples))
	for i := range samples {
		out[i] = math.NaN()
		j := back(samples, i)
		if j < 0 {
			continue
		}
		now, then := samples[i].buckets(name, want), samples[j].buckets(name, want)
		bounds := make([]float64, 0, len(now))
		for b := range now {
			bounds = append(bounds, b)
		}
		sort.Float64s(bounds)
		total := now[math.Inf(1)] - then[math.Inf(1)]
		if total <= 0 {
			continue
		}
		rank := q * total
		prevBound, prevCount := 0.0, 0.0
		for _, b := range bounds {
			c := now[b] - then[b]
			if c >= rank {
				if math.IsInf(b, 1) {
					out[i] = prevBound * scale // as Prometheus: the highest finite bound
				} else {
					out[i] = (prevBound + (b-prevBound)*(rank-prevCount)/math.Max(c-prevCount, 1e-12)) * scale
				}
				break
			}
			prevBound, prevCount = b, c
		}
	}
	return out
}
