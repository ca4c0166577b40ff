package store

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"comfybatch/lifecycle"
)

// BenchmarkTransitions measures acknowledged writes per second from many
// workers at once: each op is one state transition (an UPDATE and an events
// row) that has returned, i.e. is committed. "durable" fsyncs every commit
// group; "nosync" shows what that durability costs.
func BenchmarkTransitions(b *testing.B) {
	for _, c := range []struct {
		name string
		opts Options
	}{{"durable", Options{}}, {"nosync", Options{NoSync: true}}} {
		b.Run(c.name, func(b *testing.B) {
			const parallelism = 32 // goroutines per GOMAXPROCS, like a run's workers
			s := openAt(b, ledgerPath(b), c.opts)
			n := parallelism * runtime.GOMAXPROCS(0)
			specs := make([]Spec, n)
			for i := range specs {
				specs[i] = spec(fmt.Sprintf("b%04d", i), "fp")
			}
			ctx := context.Background()
			if _, err := s.Sync(ctx, specs); err != nil {
				b.Fatal(err)
			}
			var wg sync.WaitGroup
			for _, sp := range specs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := s.Apply(ctx, sp.ID, lifecycle.Step{To: lifecycle.Submitting}); err != nil {
						b.Error(err)
					} else if err := s.Apply(ctx, sp.ID, lifecycle.Step{To: lifecycle.Queued, RequestID: "req", Detail: "request req"}); err != nil {
						b.Error(err)
					}
				}()
			}
			wg.Wait()
			var next atomic.Int64
			b.SetParallelism(parallelism)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				id := specs[next.Add(1)-1].ID
				for i := 0; pb.Next(); i++ {
					st, remote := lifecycle.Running, "in_progress"
					if i%2 == 1 {
						st, remote = lifecycle.Queued, "in_queue"
					}
					if err := s.Apply(ctx, id, lifecycle.Step{To: st, Remote: remote}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
		})
	}
}
