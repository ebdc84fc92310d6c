package testenv

import "testing"

// BenchmarkPostgres measures what a test pays for a fresh, migrated
// database of its own.
func BenchmarkPostgres(b *testing.B) {
	for b.Loop() {
		Postgres(b)
	}
}

// BenchmarkPostgresParallel is BenchmarkPostgres with several tests making
// databases at once, as `go test ./...` does.
func BenchmarkPostgresParallel(b *testing.B) {
	b.SetParallelism(2)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			Postgres(b)
		}
	})
}
