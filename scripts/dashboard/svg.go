package main

import (
	"fmt"
	"html"
	"math"
	"strings"
	"time"
)

// mark is a phase of the load, shown as a band on every panel.
type mark struct {
	label    string
	from, to time.Duration
}

// Layout of the rendering, in SVG units.
const (
	cols     = 2
	panelW   = 480
	panelH   = 230
	gap      = 16
	top      = 70 // room for the title and the phase strip
	plotL    = 52 // inside a panel: left, right, top and bottom margins of the plot
	plotR    = 12
	plotT    = 30
	plotB    = 44
	fontFace = "Helvetica, Arial, sans-serif"
)

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"}

// render draws the panels over the samples as one SVG document; machine
// describes where it ran.
func render(samples []sample, marks []mark, ps []panel, machine string) string {
	rows := (len(ps) + cols - 1) / cols
	width := cols*panelW + (cols+1)*gap
	height := top + rows*(panelH+gap)
	end := samples[len(samples)-1].at.Seconds()
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="%s">`+"\n", width, height, width, height, fontFace)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#f4f5f5"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%d" y="26" font-size="17" font-weight="bold" fill="#222">Sluice dashboard (docs/grafana-sluice.json), one sluiced under sluice-bench load</text>`+"\n", gap)
	fmt.Fprintf(&b, `<text x="%d" y="46" font-size="11" fill="#555">scraped every %.0f s; rates and quantiles over %s windows; shaded: load phases; %s</text>`+"\n", gap, samples[1].at.Seconds()-samples[0].at.Seconds(), window, html.EscapeString(machine))
	// The phase strip, on the time axis of the panels.
	x0, pw := float64(gap+plotL), float64(panelW-plotL-plotR)
	for _, m := range marks {
		if m.label == "idle" {
			continue
		}
		x := x0 + pw*m.from.Seconds()/end
		fmt.Fprintf(&b, `<text x="%.1f" y="62" font-size="11" fill="#333">▸ %s</text>`+"\n", x, html.EscapeString(m.label))
	}
	for i, p := range ps {
		px := gap + (i%cols)*(panelW+gap)
		py := top + (i/cols)*(panelH+gap)
		drawPanel(&b, px, py, p, samples, marks, end)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func drawPanel(b *strings.Builder, px, py int, p panel, samples []sample, marks []mark, end float64) {
	fmt.Fprintf(b, `<g transform="translate(%d,%d)">`+"\n", px, py)
	fmt.Fprintf(b, `<rect width="%d" height="%d" fill="#fff" stroke="#d8d9da"/>`+"\n", panelW, panelH)
	fmt.Fprintf(b, `<text x="10" y="19" font-size="13" font-weight="bold" fill="#222">%s</text>`+"\n", html.EscapeString(p.title))
	fmt.Fprintf(b, `<text x="%d" y="19" font-size="10" fill="#777" text-anchor="end">%s</text>`+"\n", panelW-10, html.EscapeString(p.unit))
	w, h := float64(panelW-plotL-plotR), float64(panelH-plotT-plotB)
	x := func(t float64) float64 { return plotL + w*t/end }
	for _, m := range marks {
		if m.label != "idle" {
			fmt.Fprintf(b, `<rect x="%.1f" y="%d" width="%.1f" height="%.1f" fill="#eef3fb"/>`+"\n", x(m.from.Seconds()), plotT, x(m.to.Seconds())-x(m.from.Seconds()), h)
		}
	}
	lines := p.lines(samples)
	top := 0.0
	for _, l := range lines {
		for _, v := range l.values {
			if !math.IsNaN(v) && !math.IsInf(v, 0) {
				top = math.Max(top, v)
			}
		}
	}
	top = niceCeil(top)
	y := func(v float64) float64 { return plotT + h - h*v/top }
	for _, f := range []float64{0, 0.5, 1} {
		fmt.Fprintf(b, `<line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#e4e4e4"/>`+"\n", plotL, plotL+w, y(top*f), y(top*f))
		fmt.Fprintf(b, `<text x="%d" y="%.1f" font-size="10" fill="#555" text-anchor="end">%s</text>`+"\n", plotL-5, y(top*f)+3, number(top*f))
	}
	for t := 0.0; t <= end; t += 20 {
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="10" fill="#555" text-anchor="middle">%.0fs</text>`+"\n", x(t), plotT+h+13, t)
	}
	for i, l := range lines {
		color := palette[i%len(palette)]
		var path strings.Builder
		pen := false
		for k, v := range l.values {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				pen = false
				continue
			}
			cmd := "L"
			if !pen {
				cmd = "M"
			}
			fmt.Fprintf(&path, "%s%.1f %.1f ", cmd, x(samples[k].at.Seconds()), y(v))
			pen = true
		}
		if path.Len() > 0 {
			fmt.Fprintf(b, `<path d="%s" fill="none" stroke="%s" stroke-width="1.6"/>`+"\n", strings.TrimSpace(path.String()), color)
		}
		// The legend: four entries a row, one or two rows.
		lx, ly := plotL+(i%4)*105, panelH-10
		if len(lines) > 4 {
			ly = panelH - 18 + (i/4)*11
		}
		fmt.Fprintf(b, `<rect x="%d" y="%d" width="10" height="3" fill="%s"/><text x="%d" y="%d" font-size="10" fill="#333">%s</text>`+"\n", lx, ly-4, color, lx+14, ly, html.EscapeString(trim(l.name, 16)))
	}
	b.WriteString("</g>\n")
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (1 for 0).
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// number formats an axis value briefly.
func number(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%gk", v/1e3)
	}
	return fmt.Sprintf("%g", math.Round(v*100)/100)
}

func trim(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
