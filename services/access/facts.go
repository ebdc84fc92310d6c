// Package access is the AccessService (capability questions, answered from
// the same policies the server enforces) and the facts loader that policies
// and read rules consult.
package access

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/authz"
	"github.com/sluicehq/sluice/sync/engine"
)

// Scopes maps the keys of fact records to their scopes without a database
// read, so a stream can watch a fact record even before it exists. Fact
// records must be of a type registered here. Immutable after construction.
type Scopes struct {
	self  map[string]bool
	under map[string]string // key type -> parent scope type
}

// NewScopes registers the key types whose records are their own scope
// (`permissions/alice` lives in scope `permissions/alice`).
func NewScopes(selfScoped ...string) *Scopes {
	s := &Scopes{self: make(map[string]bool), under: make(map[string]string)}
	for _, t := range selfScoped {
		s.self[t] = true
	}
	return s
}

// Under registers a key type whose records live in a parent's scope: a
// key `typ/<a>/<rest>` is in scope `parent/<a>` (messages and memberships
// of channel `<a>` live in `channel/<a>`). It returns s.
func (s *Scopes) Under(typ, parent string) *Scopes {
	s.under[typ] = parent
	return s
}

// Known reports whether key's type is registered, whether or not key is
// well formed.
func (s *Scopes) Known(key string) bool {
	typ, _ := authz.SplitScope(key)
	_, under := s.under[typ]
	return s.self[typ] || under
}

// Of returns the scope of key, if its type is registered.
func (s *Scopes) Of(key string) (string, bool) {
	typ, rest := authz.SplitScope(key)
	if s.self[typ] {
		return key, true
	}
	if parent, ok := s.under[typ]; ok {
		a, b, found := strings.Cut(rest, "/")
		if found && a != "" && b != "" {
			return parent + "/" + a, true
		}
	}
	return "", false
}

// Loader reads fact records from the store. Concurrent reads are batched:
// when one change makes thousands of streams re-check the same permission,
// they share a few queries instead of one each. A batch's query starts
// only after every read in it was requested, so no caller ever gets a
// version older than the state at its request. Safe for concurrent use.
type Loader struct {
	store  *engine.Store
	scopes *Scopes

	mu      sync.Mutex
	pending map[string][]chan loaded // reads waiting for the next batch
	running bool                     // a batch leader is collecting or querying
}

type loaded struct {
	c   *engine.Change
	err error
}

// NewLoader returns a Loader.
func NewLoader(store *engine.Store, scopes *Scopes) *Loader {
	return &Loader{store: store, scopes: scopes, pending: make(map[string][]chan loaded)}
}

// load returns the current record of key (nil if it never existed). The
// first caller without a batch running leads: it runs batches until no
// read is waiting. Every waiter is answered by a query that started after
// it registered.
func (l *Loader) load(ctx context.Context, key string) (*engine.Change, error) {
	ch := make(chan loaded, 1)
	l.mu.Lock()
	l.pending[key] = append(l.pending[key], ch)
	lead := !l.running
	l.running = true
	l.mu.Unlock()
	if lead {
		l.lead()
	}
	select {
	case r := <-ch:
		return r.c, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (l *Loader) lead() {
	for {
		l.mu.Lock()
		batch := l.pending
		if len(batch) == 0 {
			l.running = false
			l.mu.Unlock()
			return
		}
		l.pending = make(map[string][]chan loaded)
		l.mu.Unlock()
		keys := make([]string, 0, len(batch))
		for k := range batch {
			keys = append(keys, k)
		}
		// The leader's own context may end; the batch serves others too.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		recs, err := l.store.Records(ctx, keys)
		cancel()
		byKey := make(map[string]*engine.Change, len(recs))
		for i := range recs {
			byKey[recs[i].Key] = &recs[i]
		}
		for k, waiters := range batch {
			for _, w := range waiters {
				w <- loaded{c: byKey[k], err: err}
			}
		}
	}
}

// Facts returns a fresh recorder for one decision.
func (l *Loader) Facts() *Facts { return &Facts{l: l} }

// Facts implements authz.Facts and remembers every key read. Safe for
// concurrent use.
type Facts struct {
	l    *Loader
	mu   sync.Mutex
	deps []engine.Dep
}

var _ authz.Facts = (*Facts)(nil)

// Get loads key into msg; found is false for a missing or deleted record.
// A key of a registered type with an empty id part (`chanmember//bob`,
// built from a request that named no channel) names no record: it is not
// found, without a read. A key of an unregistered type is a programming
// error.
func (f *Facts) Get(ctx context.Context, key string, msg proto.Message) (bool, error) {
	scope, ok := f.l.scopes.Of(key)
	if !ok && f.l.scopes.Known(key) {
		return false, nil
	}
	if !ok {
		return false, fmt.Errorf("fact %s: key type has no known scope", key)
	}
	f.mu.Lock()
	f.deps = append(f.deps, engine.Dep{Key: key, Scope: scope})
	f.mu.Unlock()
	rec, err := f.l.load(ctx, key)
	if err != nil {
		return false, err
	}
	if rec == nil || rec.Deleted {
		return false, nil
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(rec.Payload, msg); err != nil {
		return false, fmt.Errorf("fact %s: %w", key, err)
	}
	return true, nil
}

// Deps returns the records read so far.
func (f *Facts) Deps() []engine.Dep {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]engine.Dep(nil), f.deps...)
}

// TxFacts returns Facts that read through a write transaction and lock
// what they read until it ends, so a decision cannot be overtaken by a
// concurrent change of the records it rests on.
func TxFacts(tx *engine.Tx) authz.Facts { return txFacts{tx: tx} }

type txFacts struct{ tx *engine.Tx }

func (t txFacts) Get(ctx context.Context, key string, msg proto.Message) (bool, error) {
	_, err := t.tx.Get(ctx, key, msg)
	if errors.Is(err, engine.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// ReadGuard checks the read rule of scope for the principal of ctx and
// returns the records the decision read and a engine.Guard that decides
// again when they change: access stays live for the stream's lifetime.
func (l *Loader) ReadGuard(ctx context.Context, reads *authz.ReadRules, scope string) ([]engine.Dep, engine.Guard, error) {
	facts := l.Facts()
	if err := reads.CanRead(ctx, scope, facts); err != nil {
		return nil, nil, err
	}
	guard := func(ctx context.Context) ([]engine.Dep, bool, error) {
		facts := l.Facts()
		err := reads.CanRead(ctx, scope, facts)
		var d *authz.Denial
		switch {
		case err == nil:
			return facts.Deps(), true, nil
		case errors.As(err, &d):
			return nil, false, nil
		default:
			return nil, false, err
		}
	}
	return facts.Deps(), guard, nil
}
