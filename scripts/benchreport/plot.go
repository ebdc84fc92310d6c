package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// bar is one group of a bar chart: a label and a value per peer.
type bar struct {
	label  string
	sluice float64
	peer   float64
}

// plots writes the charts of docs/BENCHMARKS.md into dir.
func plots(s *Summary, dir string) error {
	closed := []string{"1x1", "100x4", "1000x4"}
	var del, p99 []bar
	for _, w := range closed {
		r := s.Workloads[w]
		del = append(del, bar{fmt.Sprintf("%d subscribers", r["sluice"].Subs), r["sluice"].DeliveriesPerS, r["deepstream"].DeliveriesPerS})
	}
	for _, w := range []string{"1x1", "100x4", "1000x4", "1000@20", "10k@2"} {
		r, ok := s.Workloads[w]
		if !ok {
			r = s.Workloads[strings.ReplaceAll(strings.ReplaceAll(w, "@", "r"), "10k", "10k")]
		}
		p99 = append(p99, bar{w, r["sluice"].DeliveryP99Ms, r["deepstream"].DeliveryP99Ms})
	}
	charts := map[string]string{
		"bench-deliveries.svg": chart("Deliveries per second, closed loop (higher is better)", "deliveries/s", del),
		"bench-p99.svg":        chart("Delivery p99 in ms by workload (lower is better)", "ms", p99),
	}
	for name, svg := range charts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(svg), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// chart renders a grouped bar chart: Sluice and deepstream side by side.
func chart(title, unit string, bars []bar) string {
	const w, h, left, top, bottom = 640, 320, 70, 40, 50
	plotW, plotH := float64(w-left-20), float64(h-top-bottom)
	most := 0.0
	for _, b := range bars {
		most = math.Max(most, math.Max(b.sluice, b.peer))
	}
	step := niceStep(most / 4)
	most = math.Ceil(most/step) * step
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&sb, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&sb, `<text x="%d" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", left, title)
	for v := 0.0; v <= most+step/2; v += step {
		y := float64(top) + plotH - v/most*plotH
		fmt.Fprintf(&sb, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", left, y, w-20, y)
		fmt.Fprintf(&sb, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y+4, short(v))
	}
	fmt.Fprintf(&sb, `<text x="14" y="%d" transform="rotate(-90 14 %d)">%s</text>`+"\n", top+int(plotH/2), top+int(plotH/2), unit)
	group := plotW / float64(len(bars))
	barW := group * 0.32
	for i, b := range bars {
		x := float64(left) + group*float64(i) + group*0.15
		for j, v := range []float64{b.sluice, b.peer} {
			color := []string{"#2b6cb0", "#c05621"}[j]
			bh := 0.0
			if !math.IsNaN(v) && most > 0 {
				bh = v / most * plotH
			}
			bx := x + float64(j)*barW
			fmt.Fprintf(&sb, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", bx, float64(top)+plotH-bh, barW-2, bh, color)
			fmt.Fprintf(&sb, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10">%s</text>`+"\n", bx+barW/2, float64(top)+plotH-bh-3, short(v))
		}
		fmt.Fprintf(&sb, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x+barW, h-bottom+16, b.label)
	}
	fmt.Fprintf(&sb, `<rect x="%d" y="%d" width="10" height="10" fill="#2b6cb0"/><text x="%d" y="%d">Sluice</text>`+"\n", left, h-18, left+14, h-9)
	fmt.Fprintf(&sb, `<rect x="%d" y="%d" width="10" height="10" fill="#c05621"/><text x="%d" y="%d">deepstream.io 7 (in memory)</text>`+"\n", left+80, h-18, left+94, h-9)
	sb.WriteString("</svg>\n")
	return sb.String()
}

func niceStep(x float64) float64 {
	if x <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}

func short(v float64) string {
	switch {
	case math.IsNaN(v):
		return "—"
	case v >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.3gk", v/1e3)
	}
	return fmt.Sprintf("%.3g", v)
}
