package engine

import (
	"context"
	"errors"
	"testing"
)

// BenchmarkUpdateGetPut is the write path of a profile change: one
// transaction that reads the record FOR UPDATE and writes its next version
// with its change.
//
//	go test -run XXX -bench UpdateGetPut ./sync/
func BenchmarkUpdateGetPut(b *testing.B) {
	pool := testPool(b)
	s := NewStore(pool, StoreConfig{})
	ctx := context.Background()
	for b.Loop() {
		_, err := s.Update(ctx, "bench", func(ctx context.Context, tx *Tx) error {
			u := user("u", "")
			if _, err := tx.Get(ctx, "user/u", u); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			_, err := tx.Put(ctx, "user/u", "user/u", u)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBareUpdate is the baseline: one autocommitted UPDATE of one row.
func BenchmarkBareUpdate(b *testing.B) {
	pool := testPool(b)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE bench (id int PRIMARY KEY, n bigint); INSERT INTO bench VALUES (1, 0)`); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := pool.Exec(ctx, `UPDATE bench SET n = n + 1 WHERE id = 1`); err != nil {
			b.Fatal(err)
		}
	}
}
