package kit

import (
	"context"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/sync/engine"
)

// The worker's handlers are the union of the modules' Jobs; two modules
// handling one kind is refused rather than one silently winning.
func TestJobsOfModules(t *testing.T) {
	t.Parallel()
	h := func(context.Context, engine.Job) error { return nil }
	jobs := func(kinds ...string) func(JobDeps) map[string]engine.JobHandler {
		return func(JobDeps) map[string]engine.JobHandler {
			out := map[string]engine.JobHandler{}
			for _, k := range kinds {
				out[k] = h
			}
			return out
		}
	}
	got, err := Jobs([]Module{{Jobs: jobs("a.one", "a.two")}, {}, {Jobs: jobs("b.one")}}, JobDeps{})
	if err != nil || len(got) != 3 || got["a.two"] == nil || got["b.one"] == nil {
		t.Fatalf("Jobs = %v, %v; want the three kinds", got, err)
	}
	if _, err := Jobs([]Module{{Jobs: jobs("x")}, {Jobs: jobs("x")}}, JobDeps{}); err == nil || !strings.Contains(err.Error(), `"x"`) {
		t.Fatalf("two handlers of one kind: %v, want refused naming it", err)
	}
}
