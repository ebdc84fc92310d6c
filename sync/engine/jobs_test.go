package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// jobState is the bookkeeping of one row of the jobs table.
type jobState struct {
	Attempts  int
	Done      bool
	Locked    bool
	LastError *string
	// DueIn is run_at - now() by the database clock.
	DueIn time.Duration
}

func readJob(t *testing.T, pool *pgxpool.Pool, id int64) jobState {
	t.Helper()
	var s jobState
	err := pool.QueryRow(ctxT(t), `
		SELECT attempts, done_at IS NOT NULL, locked_until IS NOT NULL, last_error, run_at - now()
		FROM jobs WHERE id = $1`, id).Scan(&s.Attempts, &s.Done, &s.Locked, &s.LastError, &s.DueIn)
	if err != nil {
		t.Fatalf("read job %d: %v", id, err)
	}
	return s
}

// jobIDs returns the ids of every job row, in id order.
func jobIDs(t *testing.T, pool *pgxpool.Pool) []int64 {
	t.Helper()
	var ids []int64
	if err := pool.QueryRow(ctxT(t), `SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM jobs`).Scan(&ids); err != nil {
		t.Fatalf("read job ids: %v", err)
	}
	return ids
}

// enqueue commits one job of kind in its own transaction and returns its id.
func enqueue(t *testing.T, s *Store, kind string, payload any) int64 {
	t.Helper()
	before := jobIDs(t, s.Pool())
	if _, err := s.Update(ctxT(t), "tester", func(ctx context.Context, tx *Tx) error {
		return tx.Enqueue(ctx, kind, payload)
	}); err != nil {
		t.Fatalf("enqueue %s: %v", kind, err)
	}
	after := jobIDs(t, s.Pool())
	if len(after) != len(before)+1 {
		t.Fatalf("enqueue %s: %d jobs before, %d after", kind, len(before), len(after))
	}
	return after[len(after)-1]
}

func runOnce(t *testing.T, w *Worker, n int) int {
	t.Helper()
	ran, err := w.RunOnce(ctxT(t), n)
	if err != nil {
		t.Fatalf("RunOnce: %v", err)
	}
	return ran
}

type echo struct {
	Text string `json:"text"`
	N    int    `json:"n"`
}

func TestJobCommittedWithRecordsRunsOnce(t *testing.T) {
	t.Parallel()
	pool := testPool(t)
	s := NewStore(pool, StoreConfig{})
	var runs atomic.Int32
	got := make(chan Job, 10)
	w := NewWorker(pool, map[string]JobHandler{
		"test.echo": func(_ context.Context, job Job) error {
			runs.Add(1)
			got <- job
			return nil
		},
	}, WorkerConfig{Poll: 10 * time.Millisecond})
	defer startRun(w)()

	if _, err := s.Update(ctxT(t), "tester", func(ctx context.Context, tx *Tx) error {
		if _, err := tx.Put(ctx, "msg/1", "channel/1", user("msg/1", "hello")); err != nil {
			return err
		}
		return tx.Enqueue(ctx, "test.echo", echo{Text: "hello", N: 7})
	}); err != nil {
		t.Fatal(err)
	}

	var job Job
	select {
	case job = <-got:
	case <-time.After(wait):
		t.Fatal("the committed job never ran")
	}
	var p echo
	if err := json.Unmarshal(job.Payload, &p); err != nil {
		t.Fatalf("payload %q: %v", job.Payload, err)
	}
	if job.Kind != "test.echo" || job.Attempt != 1 || p != (echo{Text: "hello", N: 7}) {
		t.Fatalf("job = %+v with payload %+v, want test.echo attempt 1 {hello 7}", job, p)
	}
	eventually(t, "job marked done", func() bool { return readJob(t, pool, job.ID).Done })
	time.Sleep(100 * time.Millisecond) // ten polls: a done job must not run again
	if n := runs.Load(); n != 1 {
		t.Fatalf("job ran %d times, want 1", n)
	}
	if st := readJob(t, pool, job.ID); st.Attempts != 1 || st.LastError != nil || st.Locked {
		t.Fatalf("finished job = %+v, want 1 attempt, no error, unlocked", st)
	}
}

func TestJobRolledBackNeverRuns(t *testing.T) {
	t.Parallel()
	pool := testPool(t)
	s := NewStore(pool, StoreConfig{})
	var runs atomic.Int32
	w := NewWorker(pool, map[string]JobHandler{
		"test.echo": func(context.Context, Job) error { runs.Add(1); return nil },
	}, WorkerConfig{})

	refused := errors.New("refused")
	_, err := s.Update(ctxT(t), "tester", func(ctx context.Context, tx *Tx) error {
		if _, err := tx.Put(ctx, "msg/1", "channel/1", user("msg/1", "hello")); err != nil {
			return err
		}
		if err := tx.Enqueue(ctx, "test.echo", echo{Text: "hello"}); err != nil {
			return err
		}
		return refused
	})
	if !errors.Is(err, refused) {
		t.Fatalf("Update = %v, want %v", err, refused)
	}
	if n := runOnce(t, w, 10); n != 0 || runs.Load() != 0 {
		t.Fatalf("RunOnce ran %d jobs (handler %d), want none", n, runs.Load())
	}
	if ids := jobIDs(t, pool); len(ids) != 0 {
		t.Fatalf("jobs %v survived the rollback", ids)
	}
}

func TestJobRetriedWithBackoff(t *testing.T) {
	t.Parallel()
	pool := testPool(t)
	s := NewStore(pool, StoreConfig{})
	var attempts []int
	w := NewWorker(pool, map[string]JobHandler{
		"test.flaky": func(_ context.Context, job Job) error {
			attempts = append(attempts, job.Attempt) // RunOnce(…, 1) runs one job at a time
			if job.Attempt < 3 {
				return fmt.Errorf("mail server unavailable (attempt %d)", job.Attempt)
			}
			return nil
		},
	}, WorkerConfig{MinBackoff: 200 * time.Millisecond, MaxBackoff: 400 * time.Millisecond})
	id := enqueue(t, s, "test.flaky", echo{N: 1})

	// Attempt n waits at least half of 200ms·2^(n-1) (jitter takes at most
	// the upper half).
	for _, step := range []struct {
		attempt  int
		minDelay time.Duration
	}{{1, 100 * time.Millisecond}, {2, 200 * time.Millisecond}} {
		eventually(t, fmt.Sprintf("attempt %d", step.attempt), func() bool { return runOnce(t, w, 1) == 1 })
		st := readJob(t, pool, id)
		if st.Done || st.Locked || st.Attempts != step.attempt {
			t.Fatalf("after failed attempt %d: %+v, want pending, unlocked, %d attempts", step.attempt, st, step.attempt)
		}
		if st.LastError == nil || !strings.Contains(*st.LastError, "mail server unavailable") {
			t.Fatalf("after failed attempt %d: last_error %v, want the handler's error", step.attempt, st.LastError)
		}
		// Leave room for the time since the failure was recorded.
		if st.DueIn < step.minDelay-50*time.Millisecond {
			t.Fatalf("after failed attempt %d: due in %v, want a backoff of at least %v", step.attempt, st.DueIn, step.minDelay)
		}
		if n := runOnce(t, w, 1); n != 0 {
			t.Fatalf("after failed attempt %d: the job ran again before its backoff", step.attempt)
		}
	}
	eventually(t, "attempt 3", func() bool { return runOnce(t, w, 1) == 1 })
	if want := []int{1, 2, 3}; fmt.Sprint(attempts) != fmt.Sprint(want) {
		t.Fatalf("attempts %v, want %v", attempts, want)
	}
	if st := readJob(t, pool, id); !st.Done || st.LastError != nil || st.Attempts != 3 {
		t.Fatalf("after success: %+v, want done without error after 3 attempts", st)
	}
}

func TestJobPermanentFailureNotRetried(t *testing.T) {
	t.Parallel()
	pool := testPool(t)
	s := NewStore(pool, StoreConfig{})
	var runs atomic.Int32
	w := NewWorker(pool, map[string]JobHandler{
		"test.bad": func(context.Context, Job) error {
			runs.Add(1)
			return fmt.Errorf("payload has no recipient: %w", ErrJobPermanent)
		},
		"test.fails": func(context.Context, Job) error { runs.Add(1); return errors.New("still down") },
	}, WorkerConfig{MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})

	bad := enqueue(t, s, "test.bad", echo{})
	unknown := enqueue(t, s, "test.nobody", echo{})
	if n := runOnce(t, w, 10); n != 2 {
		t.Fatalf("RunOnce ran %d jobs, want 2", n)
	}
	time.Sleep(20 * time.Millisecond) // well past any backoff
	if n := runOnce(t, w, 10); n != 0 {
		t.Fatalf("dead jobs ran again (%d)", n)
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1", n)
	}
	for id, want := range map[int64]string{bad: "payload has no recipient", unknown: `no handler for job kind "test.nobody"`} {
		st := readJob(t, pool, id)
		if !st.Done || st.Attempts != 1 || st.LastError == nil || !strings.Contains(*st.LastError, want) {
			t.Fatalf("job %d = %+v, want dead after 1 attempt with error %q", id, st, want)
		}
	}

	// A job that keeps failing dies after max_attempts.
	fails := enqueue(t, s, "test.fails", echo{})
	if _, err := pool.Exec(ctxT(t), `UPDATE jobs SET max_attempts = 3 WHERE id = $1`, fails); err != nil {
		t.Fatal(err)
	}
	runs.Store(0)
	eventually(t, "the failing job to die", func() bool {
		runOnce(t, w, 10)
		return readJob(t, pool, fails).Done
	})
	time.Sleep(20 * time.Millisecond)
	runOnce(t, w, 10)
	if st := readJob(t, pool, fails); runs.Load() != 3 || st.Attempts != 3 || st.LastError == nil || *st.LastError != "still down" {
		t.Fatalf("handler ran %d times, job %+v; want 3 runs and dead with its last error", runs.Load(), st)
	}
}

func TestJobWorkersShareQueue(t *testing.T) {
	t.Parallel()
	pool := testPool(t)
	s := NewStore(pool, StoreConfig{})
	const jobs = 50
	if _, err := s.Update(ctxT(t), "tester", func(ctx context.Context, tx *Tx) error {
		for i := range jobs {
			if err := tx.Enqueue(ctx, "test.count", echo{N: i}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	var (
		mu       sync.Mutex
		running  = map[int64]bool{}
		runs     = map[int64]int{}
		overlaps []int64
		total    atomic.Int32
	)
	handler := func(_ context.Context, job Job) error {
		mu.Lock()
		if running[job.ID] {
			overlaps = append(overlaps, job.ID)
		}
		running[job.ID] = true
		runs[job.ID]++
		mu.Unlock()
		time.Sleep(2 * time.Millisecond) // overlap with the other worker's claims
		mu.Lock()
		delete(running, job.ID)
		mu.Unlock()
		total.Add(1)
		return nil
	}
	cfg := WorkerConfig{Poll: 5 * time.Millisecond, Concurrency: 3}
	w1 := NewWorker(pool, map[string]JobHandler{"test.count": handler}, cfg)
	w2 := NewWorker(pool, map[string]JobHandler{"test.count": handler}, cfg)
	stop1, stop2 := startRun(w1), startRun(w2)

	eventually(t, "every job to finish", func() bool {
		var left int
		if err := pool.QueryRow(ctxT(t), `SELECT count(*) FROM jobs WHERE done_at IS NULL`).Scan(&left); err != nil {
			t.Fatal(err)
		}
		return left == 0
	})
	time.Sleep(50 * time.Millisecond) // ten polls each: nothing may run again
	stop1()
	stop2()
	mu.Lock()
	defer mu.Unlock()
	if len(overlaps) > 0 {
		t.Fatalf("jobs %v ran on both workers at once", overlaps)
	}
	if n := total.Load(); n != jobs || len(runs) != jobs {
		t.Fatalf("%d runs of %d distinct jobs, want %d of %d", n, len(runs), jobs, jobs)
	}
}

func TestJobExpiredLeaseRunsAgain(t *testing.T) {
	t.Parallel()
	pool := testPool(t)
	s := NewStore(pool, StoreConfig{})
	var runs []Job
	handlers := map[string]JobHandler{"test.echo": func(_ context.Context, job Job) error {
		runs = append(runs, job)
		return nil
	}}
	const lease = 150 * time.Millisecond
	id := enqueue(t, s, "test.echo", echo{})

	// A worker claims the job and dies before finishing it.
	crashed := NewWorker(pool, handlers, WorkerConfig{Lease: lease})
	stale, err := crashed.claim(ctxT(t), 1)
	if err != nil || len(stale) != 1 {
		t.Fatalf("claim = %v, %v; want the job", stale, err)
	}
	w := NewWorker(pool, handlers, WorkerConfig{Lease: lease})
	if n := runOnce(t, w, 1); n != 0 {
		t.Fatal("a leased job was claimed again before its lease expired")
	}
	eventually(t, "the expired lease to be taken over", func() bool { return runOnce(t, w, 1) == 1 })
	if len(runs) != 1 || runs[0].ID != id || runs[0].Attempt != 2 {
		t.Fatalf("runs %+v, want job %d on attempt 2", runs, id)
	}
	// The dead worker's late outcome must not overwrite the finished run.
	if err := crashed.finish(ctxT(t), stale[0], errors.New("late failure")); err != nil {
		t.Fatal(err)
	}
	if st := readJob(t, pool, id); !st.Done || st.LastError != nil || st.Attempts != 2 {
		t.Fatalf("job %+v, want done without error after 2 attempts", st)
	}
}

func TestJobHandlerBoundedByLease(t *testing.T) {
	t.Parallel()
	pool := testPool(t)
	s := NewStore(pool, StoreConfig{})
	const lease = 150 * time.Millisecond
	var dl time.Duration
	w := NewWorker(pool, map[string]JobHandler{"test.hang": func(ctx context.Context, job Job) error {
		d, ok := ctx.Deadline()
		if !ok {
			return errors.New("no deadline")
		}
		dl = time.Until(d)
		<-ctx.Done() // a handler stuck on a dead server
		return ctx.Err()
	}}, WorkerConfig{Lease: lease, MinBackoff: time.Minute})
	id := enqueue(t, s, "test.hang", echo{})

	start := time.Now()
	if n := runOnce(t, w, 1); n != 1 {
		t.Fatalf("RunOnce ran %d jobs, want 1", n)
	}
	if took := time.Since(start); took > lease+time.Second || dl <= 0 || dl > lease {
		t.Fatalf("handler had %v left and RunOnce took %v, want both bounded by the %v lease", dl, took, lease)
	}
	if st := readJob(t, pool, id); st.Done || st.Locked || st.LastError == nil || st.DueIn < 20*time.Second { // the backoff is at least half of MinBackoff; the read comes a little later
		t.Fatalf("job %+v, want pending with an error and a backoff", st)
	}
}

func TestJobCloseReleasesRunningJobs(t *testing.T) {
	t.Parallel()
	pool := testPool(t)
	s := NewStore(pool, StoreConfig{})
	started := make(chan struct{}, 1)
	w := NewWorker(pool, map[string]JobHandler{"test.hang": func(ctx context.Context, job Job) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}}, WorkerConfig{Poll: 10 * time.Millisecond})
	id := enqueue(t, s, "test.hang", echo{})
	stop := startRun(w)
	select {
	case <-started:
	case <-time.After(wait):
		t.Fatal("the job never started")
	}
	closed := make(chan struct{})
	go func() { stop(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(wait):
		t.Fatal("Close did not return")
	}
	// Released as it was: another worker runs it at once, as attempt 1.
	if st := readJob(t, pool, id); st.Done || st.Locked || st.Attempts != 0 || st.DueIn > 0 {
		t.Fatalf("after Close: %+v, want pending, unlocked, due, no attempt counted", st)
	}
	var attempt int
	w2 := NewWorker(pool, map[string]JobHandler{"test.hang": func(_ context.Context, job Job) error {
		attempt = job.Attempt
		return nil
	}}, WorkerConfig{})
	if n := runOnce(t, w2, 1); n != 1 || attempt != 1 {
		t.Fatalf("next worker ran %d jobs at attempt %d, want 1 at attempt 1", n, attempt)
	}
}

func TestJobPruneFinished(t *testing.T) {
	t.Parallel()
	pool := testPool(t)
	s := NewStore(pool, StoreConfig{})
	old := enqueue(t, s, "test.echo", echo{})
	recent := enqueue(t, s, "test.echo", echo{})
	pending := enqueue(t, s, "test.echo", echo{})
	if _, err := pool.Exec(ctxT(t), `
		UPDATE jobs SET done_at = now() - CASE id WHEN $1 THEN interval '8 days' ELSE interval '6 days' END
		WHERE id IN ($1, $2)`, old, recent); err != nil {
		t.Fatal(err)
	}
	w := NewWorker(pool, nil, WorkerConfig{})
	n, err := w.prune(ctxT(t))
	if err != nil || n != 1 {
		t.Fatalf("prune = %d, %v; want 1", n, err)
	}
	if ids := jobIDs(t, pool); fmt.Sprint(ids) != fmt.Sprint([]int64{recent, pending}) {
		t.Fatalf("jobs left %v, want %v", ids, []int64{recent, pending})
	}
}

func TestJobBackoff(t *testing.T) {
	t.Parallel()
	lo, hi := time.Second, 5*time.Minute
	for _, tc := range []struct {
		attempt int
		full    time.Duration
	}{
		{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {9, 256 * time.Second},
		{10, hi}, {40, hi}, {1 << 30, hi},
	} {
		for range 100 {
			if d := backoff(tc.attempt, lo, hi); d < tc.full/2 || d > tc.full {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", tc.attempt, d, tc.full/2, tc.full)
			}
		}
	}
}

func TestJobErrorText(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", maxJobError) // 2 bytes each
	for _, tc := range []struct {
		in   string
		want func(string) bool
	}{
		{"smtp: 451 try later", func(s string) bool { return s == "smtp: 451 try later" }},
		{"nul\x00byte and bad \xff utf-8", func(s string) bool { return s == "nulbyte and bad \uFFFD utf-8" }},
		{long, func(s string) bool {
			return len(s) <= maxJobError+len("…") && strings.HasSuffix(s, "é…") && !strings.ContainsRune(s, '\uFFFD')
		}},
	} {
		if got := jobError(errors.New(tc.in)); !tc.want(got) {
			t.Errorf("jobError(%.20q…) = %.40q…", tc.in, got)
		}
	}
}
