package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Enqueue adds a job of kind to the transaction: it is committed (or rolled
// back) with the records, and a Worker runs it after the commit, at least
// once (see Worker). payload is JSON-marshalled; the handler receives those
// bytes. Enqueue never makes the write wait for the job, and a failing job
// never undoes the write. Like everything in Update's function, a job
// enqueued in an attempt that is retried exists only once, from the attempt
// that commits.
func (t *Tx) Enqueue(ctx context.Context, kind string, payload any) error {
	if kind == "" {
		return errors.New("enqueue: empty job kind")
	}
	data, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("enqueue %s: encode payload: %w", kind, err)
	}
	if _, err := t.tx.Exec(ctx, `INSERT INTO jobs (kind, payload) VALUES ($1, $2)`, kind, data); err != nil {
		return fmt.Errorf("enqueue %s: %w", kind, translate(err))
	}
	return nil
}

// Job is one unit of side-effect work, as handed to a JobHandler.
type Job struct {
	ID      int64
	Kind    string
	Payload []byte // the JSON given to Enqueue
	Attempt int    // 1 on the first run
}

// JobHandler does a job. It runs at least once per job and may run again
// after it succeeded (see Worker), so it must be idempotent. Returning an
// error retries the job later with backoff; an error wrapping
// ErrJobPermanent fails it at once. The error text is stored with the job
// and logged: it must not contain secrets. ctx ends when the job's lease
// does, or when the Worker closes.
type JobHandler func(ctx context.Context, job Job) error

// ErrJobPermanent, wrapped in a handler's error, fails a job without retry.
var ErrJobPermanent = errors.New("permanent job failure")

// WorkerConfig configures a Worker. The zero value is valid.
type WorkerConfig struct {
	// Poll is the time between two looks for due jobs when the queue is
	// idle. Zero means 200ms.
	Poll time.Duration
	// Lease is how long a claimed job is reserved for its worker; the
	// handler's context ends with it, and another worker may claim the job
	// once it expired. Zero means 30s.
	Lease time.Duration
	// Concurrency bounds the handlers one Worker runs at once. Zero means 4.
	Concurrency int
	// MinBackoff and MaxBackoff bound the delay before a failed job runs
	// again: MinBackoff doubled per failed attempt, capped at MaxBackoff,
	// with the upper half randomized. Zero means 1s and 5m.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives retries, dead jobs and queue errors. Nil discards them.
	Logger *slog.Logger
}

const (
	// jobRetention is how long finished jobs are kept for inspection.
	jobRetention = 7 * 24 * time.Hour
	// jobPruneEvery is the time between two prunes of finished jobs.
	jobPruneEvery = time.Minute
	// maxJobError bounds the error text stored with a job.
	maxJobError = 1000
	// finishTimeout bounds the update that records a job's outcome; it
	// runs even while the Worker closes.
	finishTimeout = 10 * time.Second
)

// Worker runs the jobs of the jobs table with handlers chosen by job kind.
// Several Workers, in one process or many, may share the queue: a job is
// claimed by one of them at a time with FOR UPDATE SKIP LOCKED and held for
// a lease.
//
// Delivery is at least once. A job whose handler succeeded is marked done;
// it runs again if the process dies before that mark is written, or if the
// handler outlives its lease and another worker claims the job (the late
// outcome is then discarded). Handlers must therefore be idempotent.
//
// A failed job runs again after an exponential backoff, up to the job's
// max_attempts (10 by default); then, or at once for ErrJobPermanent or a
// kind without a handler, it is marked done with its last error (dead) and
// logged. A job interrupted by the end of Run is released without counting the
// attempt. Finished jobs are deleted after 7 days.
//
// Run runs it; RunOnce drives it directly and is safe for concurrent
// use.
type Worker struct {
	pool     *pgxpool.Pool
	handlers map[string]JobHandler
	cfg      WorkerConfig
	log      *slog.Logger
	outage   Outage
}

// NewWorker returns a Worker running handlers by job kind; Run runs it
// until its context ends. The caller keeps
// ownership of pool; handlers must not be changed afterwards.
func NewWorker(pool *pgxpool.Pool, handlers map[string]JobHandler, cfg WorkerConfig) *Worker {
	if cfg.Poll <= 0 {
		cfg.Poll = 200 * time.Millisecond
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 30 * time.Second
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Minute
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = cfg.MinBackoff
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Worker{pool: pool, handlers: handlers, cfg: cfg, log: cfg.Logger}
}

// Run runs jobs and prunes finished ones until ctx ends, then cancels the
// handlers it runs (their jobs are released for another run) and waits for
// them. It returns nil; call it once.
func (w *Worker) Run(ctx context.Context) error {
	w.loop(ctx)
	return nil
}

func (w *Worker) loop(ctx context.Context) {
	var running sync.WaitGroup
	defer running.Wait()
	// free holds one token per idle handler slot.
	free := make(chan struct{}, w.cfg.Concurrency)
	for range w.cfg.Concurrency {
		free <- struct{}{}
	}
	// finished wakes the loop when a slot frees up while jobs are waiting.
	finished := make(chan struct{}, 1)
	poll := time.NewTicker(w.cfg.Poll)
	defer poll.Stop()
	prune := time.NewTicker(jobPruneEvery)
	defer prune.Stop()

	claim, backlog := true, false
	for {
		if claim {
			n := len(free)
			if n == 0 {
				backlog = true // every slot is busy: jobs may be waiting
			} else {
				jobs, err := w.claim(ctx, n)
				switch {
				case err != nil && ctx.Err() == nil:
					w.outage.Fail(w.log, "claim jobs", err)
				case err == nil:
					w.outage.OK(w.log, "claim jobs")
				}
				for _, j := range jobs {
					<-free
					running.Go(func() {
						defer func() {
							free <- struct{}{}
							select {
							case finished <- struct{}{}:
							default:
							}
						}()
						if err := w.run(ctx, j); err != nil && ctx.Err() == nil {
							w.log.Warn("record job outcome", "job", j.ID, "kind", j.Kind, "err", err)
						}
					})
				}
				backlog = len(jobs) == n
			}
		}
		claim = false
		if backlog && len(free) > 0 {
			claim = true
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
			claim = true
		case <-finished:
			claim = backlog
		case <-prune.C:
			if _, err := w.prune(ctx); err != nil && ctx.Err() == nil {
				w.outage.Fail(w.log, "prune jobs", err)
			}
		}
	}
}

// RunOnce claims up to n due jobs, runs them (Concurrency at a time) and
// returns how many it ran once their outcomes are recorded. It returns an
// error if the jobs could not be claimed or an outcome not recorded (the
// job then runs again when its lease expires); handler errors are recorded
// with the job, not returned. Cancelling ctx cancels the handlers and
// releases their jobs.
func (w *Worker) RunOnce(ctx context.Context, n int) (int, error) {
	if n <= 0 {
		return 0, nil
	}
	jobs, err := w.claim(ctx, n)
	if err != nil {
		return 0, err
	}
	sem := make(chan struct{}, w.cfg.Concurrency)
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = w.run(ctx, j)
		})
	}
	wg.Wait()
	return len(jobs), errors.Join(errs...)
}

// claimedJob is a job with what the worker needs to finish it.
type claimedJob struct {
	Job
	maxAttempts int
	deadline    time.Time // when the lease ends, by the local clock
}

// claim leases up to n due jobs. The attempt number doubles as a fencing
// token: an outcome is recorded only while attempts still equals it, so a
// worker whose lease expired and was taken over cannot overwrite the new
// run's state.
func (w *Worker) claim(ctx context.Context, n int) ([]claimedJob, error) {
	// Taken before the query, so the local deadline falls no later than the
	// lease Postgres records (up to clock skew between the two).
	deadline := time.Now().Add(w.cfg.Lease)
	rows, err := w.pool.Query(ctx, `
		UPDATE jobs SET locked_until = now() + $1::interval, attempts = attempts + 1
		WHERE id IN (
			SELECT id FROM jobs
			WHERE done_at IS NULL AND run_at <= now()
			  AND (locked_until IS NULL OR locked_until < now())
			ORDER BY run_at
			LIMIT $2
			FOR UPDATE SKIP LOCKED)
		RETURNING id, kind, payload, attempts, max_attempts`, w.cfg.Lease, n)
	if err != nil {
		return nil, fmt.Errorf("claim jobs: %w", translate(err))
	}
	jobs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (claimedJob, error) {
		j := claimedJob{deadline: deadline}
		err := row.Scan(&j.ID, &j.Kind, &j.Payload, &j.Attempt, &j.maxAttempts)
		return j, err
	})
	if err != nil {
		return nil, fmt.Errorf("claim jobs: %w", translate(err))
	}
	return jobs, nil
}

// run runs one claimed job and records its outcome.
func (w *Worker) run(ctx context.Context, j claimedJob) error {
	var err error
	if h, ok := w.handlers[j.Kind]; !ok {
		err = fmt.Errorf("no handler for job kind %q: %w", j.Kind, ErrJobPermanent)
	} else {
		hctx, cancel := context.WithDeadline(ctx, j.deadline)
		err = w.call(hctx, h, j.Job)
		cancel()
	}
	return w.finish(ctx, j, err)
}

// call runs h, turning a panic into an error so one bad job cannot take the
// process down.
func (w *Worker) call(ctx context.Context, h JobHandler, job Job) (err error) {
	defer func() {
		if p := recover(); p != nil {
			w.log.Error("job handler panicked", "job", job.ID, "kind", job.Kind, "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	return h(ctx, job)
}

// finish records the outcome err of a run of j.
func (w *Worker) finish(ctx context.Context, j claimedJob, err error) error {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	const fence = ` WHERE id = $1 AND attempts = $2 AND done_at IS NULL`
	var (
		sql  string
		args = []any{j.ID, j.Attempt}
	)
	switch {
	case err == nil:
		sql = `UPDATE jobs SET done_at = now(), locked_until = NULL, last_error = NULL` + fence
	case ctx.Err() != nil:
		// The worker is stopping, not the job failing: hand it back as it was.
		sql = `UPDATE jobs SET locked_until = NULL, attempts = attempts - 1` + fence
	case errors.Is(err, ErrJobPermanent) || j.Attempt >= j.maxAttempts:
		w.log.Error("job failed permanently", "job", j.ID, "kind", j.Kind, "attempt", j.Attempt, "err", err)
		sql = `UPDATE jobs SET done_at = now(), locked_until = NULL, last_error = $3` + fence
		args = append(args, jobError(err))
	default:
		d := backoff(j.Attempt, w.cfg.MinBackoff, w.cfg.MaxBackoff)
		w.log.Warn("job failed; will retry", "job", j.ID, "kind", j.Kind, "attempt", j.Attempt, "retryIn", d, "err", err)
		sql = `UPDATE jobs SET run_at = now() + $3::interval, locked_until = NULL, last_error = $4` + fence
		args = append(args, d, jobError(err))
	}
	tag, xerr := w.pool.Exec(fctx, sql, args...)
	if xerr != nil {
		return fmt.Errorf("finish job %d: %w", j.ID, translate(xerr))
	}
	if tag.RowsAffected() == 0 {
		// The lease expired and another run took the job over; that run
		// records the outcome.
		w.log.Warn("job lease lost; outcome discarded", "job", j.ID, "kind", j.Kind, "attempt", j.Attempt)
	}
	return nil
}

// prune deletes jobs finished more than jobRetention ago.
func (w *Worker) prune(ctx context.Context) (int64, error) {
	tag, err := w.pool.Exec(ctx, `DELETE FROM jobs WHERE done_at < now() - $1::interval`, jobRetention)
	if err != nil {
		return 0, fmt.Errorf("prune jobs: %w", translate(err))
	}
	return tag.RowsAffected(), nil
}

// backoff returns the delay before the run after failed attempt: lo
// doubled per attempt up to hi, the upper half random so that jobs which
// failed together do not retry together.
func backoff(attempt int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < attempt && d < hi; i++ {
		if d > hi/2 {
			d = hi
			break
		}
		d *= 2
	}
	d = min(d, hi)
	half := d / 2
	return half + rand.N(d-half+1)
}

// jobError returns the text stored as a job's last error: valid UTF-8
// without NUL bytes (Postgres text refuses both), at most maxJobError bytes.
func jobError(err error) string {
	s := strings.ToValidUTF8(err.Error(), "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "")
	if len(s) <= maxJobError {
		return s
	}
	cut := maxJobError
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
