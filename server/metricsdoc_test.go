package server

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// documentedMetrics returns the metric names docs/OPERATIONS.md lists in
// its metrics table; "`_idle`" after a name stands for that name with its
// last word replaced.
func documentedMetrics(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile("../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	row := regexp.MustCompile("(?m)^\\| (`sluice_[^|]*)\\|")
	name := regexp.MustCompile("`(sluice_[a-z_]+|_[a-z]+)(\\{[^}]*\\})?`")
	for _, r := range row.FindAllStringSubmatch(string(doc), -1) {
		last := ""
		for _, m := range name.FindAllStringSubmatch(r[1], -1) {
			n := m[1]
			if n[0] == '_' && last != "" {
				n = regexp.MustCompile(`_[a-z]+$`).ReplaceAllString(last, n)
			}
			last = n
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	if len(names) < 40 {
		t.Fatalf("found only %d metrics in OPERATIONS.md: %v", len(names), names)
	}
	return names
}

// checkDocumented fails for every metric OPERATIONS.md lists that fams
// lacks, and for every sluice_ metric of fams it does not list.
func checkDocumented(t *testing.T, fams map[string]*dto.MetricFamily) {
	t.Helper()
	documented := documentedMetrics(t)
	for _, n := range documented {
		if fams[n] == nil {
			t.Errorf("OPERATIONS.md lists %s, which /metrics does not export", n)
		}
	}
	for n := range fams {
		if strings.HasPrefix(n, "sluice_") && !slices.Contains(documented, n) {
			t.Errorf("/metrics exports %s, which OPERATIONS.md does not list", n)
		}
	}
}
