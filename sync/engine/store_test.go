package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	userv1 "github.com/sluicehq/sluice/gen/sluice/user/v1"
)

func TestStorePutVersionsAndSeqs(t *testing.T) {
	t.Parallel()
	pool := testPool(t)
	s := NewStore(pool, StoreConfig{})

	c := put(t, s, "user/1", "user/1", "Ada")
	if c.Version != 1 || c.Seq != 1 {
		t.Fatalf("first put: version %d seq %d, want 1 and 1", c.Version, c.Seq)
	}
	if c.Key != "user/1" || c.Scope != "user/1" || c.Actor != "tester" || c.TypeName != "sluice.user.v1.User" || c.Deleted || c.At.IsZero() {
		t.Fatalf("first put: change %+v", c)
	}
	c = put(t, s, "user/1", "user/1", "Ada L.")
	if c.Version != 2 || c.Seq != 2 {
		t.Fatalf("second put: version %d seq %d, want 2 and 2", c.Version, c.Seq)
	}

	// Seqs of one scope are gapless across keys; versions are per key.
	want := []changeRow{
		{Seq: 1, Key: "msg/a", Version: 1},
		{Seq: 2, Key: "msg/b", Version: 1},
		{Seq: 3, Key: "msg/a", Version: 2},
		{Seq: 4, Key: "msg/c", Version: 1},
		{Seq: 5, Key: "msg/b", Version: 2},
	}
	for _, w := range want {
		c := put(t, s, w.Key, "channel/7", "x")
		if c.Seq != w.Seq || c.Version != w.Version {
			t.Fatalf("put %s: seq %d version %d, want seq %d version %d", w.Key, c.Seq, c.Version, w.Seq, w.Version)
		}
	}
	if got := changeRows(t, pool, "channel/7"); !slices.Equal(got, want) {
		t.Fatalf("changes of channel/7 = %v, want %v", got, want)
	}
	if seq, _, _ := scopeRow(t, pool, "channel/7"); seq != 5 {
		t.Fatalf("scope seq = %d, want 5", seq)
	}
	// The other scope's counter is independent.
	if got := seqsOf(changeRows(t, pool, "user/1")); !slices.Equal(got, []int64{1, 2}) {
		t.Fatalf("seqs of user/1 = %v, want [1 2]", got)
	}

	recs, err := s.Records(ctxT(t), []string{"msg/a", "msg/b", "msg/c", "msg/none"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][2]int64{}
	for _, r := range recs {
		got[r.Key] = [2]int64{r.Version, r.Seq}
	}
	wantRecs := map[string][2]int64{"msg/a": {2, 3}, "msg/b": {2, 5}, "msg/c": {1, 4}}
	if fmt.Sprint(got) != fmt.Sprint(wantRecs) {
		t.Fatalf("records (version, seq) = %v, want %v", got, wantRecs)
	}
}

func TestStoreSeveralPutsInOneUpdate(t *testing.T) {
	t.Parallel()
	s := NewStore(testPool(t), StoreConfig{})
	changes, err := s.Update(ctxT(t), "alice", func(ctx context.Context, tx *Tx) error {
		for _, k := range []string{"msg/1", "msg/2", "msg/1"} {
			if _, err := tx.Put(ctx, k, "channel/1", user(k, "x")); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range changes {
		got = append(got, fmt.Sprintf("%s v%d s%d", c.Key, c.Version, c.Seq))
		if c.Actor != "alice" || c.Message == nil {
			t.Errorf("change %+v: want actor alice and the message in hand", c)
		}
	}
	if want := []string{"msg/1 v1 s1", "msg/2 v1 s2", "msg/1 v2 s3"}; !slices.Equal(got, want) {
		t.Fatalf("changes = %q, want %q", got, want)
	}
}

func TestStorePutIntoOtherScopeConflicts(t *testing.T) {
	t.Parallel()
	pool := testPool(t)
	s := NewStore(pool, StoreConfig{})
	put(t, s, "user/1", "user/1", "Ada")
	put(t, s, "user/2", "user/2", "Bob")

	// The caller gives up: everything rolls back.
	_, err := s.Update(ctxT(t), "tester", func(ctx context.Context, tx *Tx) error {
		_, err := tx.Put(ctx, "user/1", "user/2", user("1", "moved"))
		return err
	})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("put into another scope: %v, want ErrConflict", err)
	}

	// The caller handles the conflict and commits other writes: the failed
	// put must not have consumed a seq of the scope it targeted.
	_, err = s.Update(ctxT(t), "tester", func(ctx context.Context, tx *Tx) error {
		if _, err := tx.Put(ctx, "user/1", "user/2", user("1", "moved")); !errors.Is(err, ErrConflict) {
			return fmt.Errorf("put into another scope: %v, want ErrConflict", err)
		}
		_, err := tx.Put(ctx, "user/2", "user/2", user("2", "Bob B."))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	if c := put(t, s, "user/1", "user/1", "Ada L."); c.Version != 2 || c.Seq != 2 {
		t.Fatalf("next put in the original scope: version %d seq %d, want 2 and 2", c.Version, c.Seq)
	}
	if got := seqsOf(changeRows(t, pool, "user/2")); !slices.Equal(got, []int64{1, 2}) {
		t.Fatalf("seqs of user/2 = %v, want [1 2]: the conflicting put left a hole", got)
	}
	if seq, _, _ := scopeRow(t, pool, "user/2"); seq != 2 {
		t.Fatalf("seq of user/2 = %d, want 2", seq)
	}
	if scope, err := s.ScopeOf(ctxT(t), "user/1"); err != nil || scope != "user/1" {
		t.Fatalf("ScopeOf(user/1) = %q, %v; the record must stay in its scope", scope, err)
	}

	// A conflict into a scope that does not exist yet must not create it
	// with a used-up seq either.
	_, err = s.Update(ctxT(t), "tester", func(ctx context.Context, tx *Tx) error {
		if _, err := tx.Put(ctx, "user/1", "fresh", user("1", "x")); !errors.Is(err, ErrConflict) {
			return fmt.Errorf("put into another scope: %v, want ErrConflict", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if c := put(t, s, "k", "fresh", "x"); c.Seq != 1 {
		t.Fatalf("first change of scope fresh has seq %d, want 1", c.Seq)
	}
}

func TestStoreDelete(t *testing.T) {
	t.Parallel()
	pool := testPool(t)
	s := NewStore(pool, StoreConfig{})
	put(t, s, "msg/1", "channel/1", "hello")
	put(t, s, "msg/2", "channel/1", "other")

	c := del(t, s, "msg/1")
	if !c.Deleted || c.Version != 2 || c.Seq != 3 || c.Key != "msg/1" || c.Scope != "channel/1" {
		t.Fatalf("delete: %+v, want a tombstone at version 2, seq 3", c)
	}
	want := []changeRow{
		{Seq: 1, Key: "msg/1", Version: 1},
		{Seq: 2, Key: "msg/2", Version: 1},
		{Seq: 3, Key: "msg/1", Version: 2, Deleted: true},
	}
	if got := changeRows(t, pool, "channel/1"); !slices.Equal(got, want) {
		t.Fatalf("changes = %v, want %v", got, want)
	}
	recs, err := s.Records(ctxT(t), []string{"msg/1"})
	if err != nil || len(recs) != 1 || !recs[0].Deleted || recs[0].Version != 2 {
		t.Fatalf("Records(msg/1) = %+v, %v; want the tombstone", recs, err)
	}

	// Get and Delete of a deleted or missing record: ErrNotFound.
	for _, key := range []string{"msg/1", "msg/none"} {
		_, err := s.Update(ctxT(t), "tester", func(ctx context.Context, tx *Tx) error {
			_, err := tx.Get(ctx, key, &userv1.User{})
			return err
		})
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%s) = %v, want ErrNotFound", key, err)
		}
		_, err = s.Update(ctxT(t), "tester", func(ctx context.Context, tx *Tx) error {
			_, err := tx.Delete(ctx, key)
			return err
		})
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("Delete(%s) = %v, want ErrNotFound", key, err)
		}
	}
	if _, err := s.ScopeOf(ctxT(t), "msg/none"); !errors.Is(err, ErrNotFound) {
		t.Errorf("ScopeOf(missing) = %v, want ErrNotFound", err)
	}

	// Writing a deleted record brings it back with the next version.
	if c := put(t, s, "msg/1", "channel/1", "again"); c.Version != 3 || c.Seq != 4 || c.Deleted {
		t.Fatalf("put after delete: %+v, want version 3 seq 4", c)
	}
}

func TestStoreGetReadsPayload(t *testing.T) {
	t.Parallel()
	s := NewStore(testPool(t), StoreConfig{})
	put(t, s, "user/1", "user/1", "Ada")
	_, err := s.Update(ctxT(t), "tester", func(ctx context.Context, tx *Tx) error {
		var u userv1.User
		c, err := tx.Get(ctx, "user/1", &u)
		if err != nil {
			return err
		}
		if !proto.Equal(&u, user("user/1", "Ada")) || c.Version != 1 || c.Seq != 1 || c.Scope != "user/1" {
			return fmt.Errorf("Get = %+v, %v", c, &u)
		}
		// A nil message reads the version only.
		if _, err := tx.Get(ctx, "user/1", nil); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// recorder is a Notifier that keeps what it was told.
type recorder struct {
	mu    sync.Mutex
	calls [][]Change
}

func (r *recorder) Notify(_ context.Context, changes []Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, slices.Clone(changes))
}

func (r *recorder) notified() [][]Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

func TestStoreUpdateRollsBack(t *testing.T) {
	t.Parallel()
	pool := testPool(t)
	rec := &recorder{}
	s := NewStore(pool, StoreConfig{Notifier: rec})
	errBoom := errors.New("boom")

	_, err := s.Update(ctxT(t), "tester", func(ctx context.Context, tx *Tx) error {
		if _, err := tx.Put(ctx, "msg/1", "channel/1", user("1", "a")); err != nil {
			return err
		}
		if _, err := tx.Put(ctx, "msg/2", "channel/1", user("2", "b")); err != nil {
			return err
		}
		return errBoom
	})
	if err != errBoom {
		t.Fatalf("Update = %v, want fn's error unchanged", err)
	}
	recs, err := s.Records(ctxT(t), []string{"msg/1", "msg/2"})
	if err != nil || len(recs) != 0 {
		t.Fatalf("records after rollback: %+v, %v", recs, err)
	}
	if got := changeRows(t, pool, "channel/1"); len(got) != 0 {
		t.Fatalf("changes after rollback: %v", got)
	}
	if n := len(rec.notified()); n != 0 {
		t.Fatalf("notifier called %d times for a rolled-back update", n)
	}

	c := put(t, s, "msg/3", "channel/1", "c")
	if c.Seq != 1 || c.Version != 1 {
		t.Fatalf("put after rollback: seq %d version %d, want 1 and 1", c.Seq, c.Version)
	}
	calls := rec.notified()
	if len(calls) != 1 || len(calls[0]) != 1 || calls[0][0].Key != "msg/3" || calls[0][0].Seq != 1 {
		t.Fatalf("notifier calls = %+v, want one with msg/3", calls)
	}
}

// TestStoreConcurrentUpdates checks the ordering rule: many writers of the
// same records end with one version per write, no lost update, and scope
// seqs 1..n in commit order.
func TestStoreConcurrentUpdates(t *testing.T) {
	t.Parallel()
	pool := testPool(t)
	s := NewStore(pool, StoreConfig{Attempts: 20})
	const (
		writers = 8
		each    = 6
		scope   = "counter"
	)
	keys := []string{"counter/a", "counter/b"}
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			for i := range each {
				key := keys[(w+i)%len(keys)]
				// Read-modify-write: Get locks the row, so no increment is lost.
				_, err := s.Update(t.Context(), fmt.Sprintf("w%d", w), func(ctx context.Context, tx *Tx) error {
					var u userv1.User
					n := 0
					if _, err := tx.Get(ctx, key, &u); err == nil {
						if n, err = strconv.Atoi(u.DisplayName); err != nil {
							return err
						}
					} else if !errors.Is(err, ErrNotFound) {
						return err
					}
					_, err := tx.Put(ctx, key, scope, user(key, strconv.Itoa(n+1)))
					return err
				})
				if err != nil {
					errs <- fmt.Errorf("writer %d: %w", w, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range writers {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-ctxT(t).Done():
			t.Fatal("writers did not finish")
		}
	}

	const total = writers * each
	rows := changeRows(t, pool, scope)
	if got := seqsOf(rows); !slices.Equal(got, span(1, total)) {
		t.Fatalf("seqs = %v, want 1..%d without holes", got, total)
	}
	// Per key, versions grow by one in seq order: seq order is commit order.
	perKey := map[string]int64{}
	for _, r := range rows {
		if r.Version != perKey[r.Key]+1 {
			t.Fatalf("change %v follows version %d of %s", r, perKey[r.Key], r.Key)
		}
		perKey[r.Key] = r.Version
	}
	recs, err := s.Records(ctxT(t), keys)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, r := range recs {
		m, err := r.Decode()
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(m.(*userv1.User).GetDisplayName())
		if int64(n) != r.Version || r.Version != perKey[r.Key] {
			t.Errorf("%s: counter %d, version %d, changes %d; want all equal", r.Key, n, r.Version, perKey[r.Key])
		}
		sum += r.Version
	}
	if sum != total {
		t.Fatalf("versions sum to %d, want %d (one per write)", sum, total)
	}
}
