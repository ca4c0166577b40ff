package runcomfy_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"

	"comfybatch/runcomfy"
	"comfybatch/runcomfy/runcomfytest"
)

// heapPeak samples HeapInuse every few milliseconds until stopped, and
// returns the most it saw.
func heapPeak() (stop func() uint64) {
	done := make(chan struct{})
	peak := make(chan uint64)
	go func() {
		var most uint64
		var ms runtime.MemStats
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			most = max(most, ms.HeapInuse)
			select {
			case <-done:
				peak <- most
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(done); return <-peak }
}

// BenchmarkResultMemory makes 32 concurrent result calls whose answers are
// 50 MB each, padded with a field the client does not read, and reports
// the peak of HeapInuse over the run: what the client holds, since the
// simulated server writes its padding from one shared buffer. (The
// padding is filtered out as it streams; an output of 50 MB would be held
// whole, within the body budget.)
//
//	go test -run '^$' -bench ResultMemory -benchtime 3x ./runcomfy/
func BenchmarkResultMemory(b *testing.B) {
	const (
		calls = 32
		size  = 50_000_000
	)
	b.Run("content-length", func(b *testing.B) {
		srv := runcomfytest.New(runcomfytest.Config{ResultBodyPad: size})
		base := srv.Start()
		defer srv.Close()
		c, err := runcomfy.New(runcomfy.Options{BaseURL: base})
		if err != nil {
			b.Fatal(err)
		}
		ids := make([]string, calls)
		for i := range ids {
			sub, err := c.Submit(context.Background(), "m/x", map[string]any{"seed": i}, runcomfy.SubmitOptions{})
			if err != nil {
				b.Fatal(err)
			}
			ids[i] = string(sub.RequestID)
		}
		measure(b, c, ids)
	})
	b.Run("chunked", func(b *testing.B) {
		// No Content-Length: the client cannot know the size before
		// reading.
		pad := make([]byte, 1<<20)
		for i := range pad {
			pad[i] = 'x'
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"status":"completed","padding":"`)
			for left := size; left > 0; left -= len(pad) {
				if _, err := w.Write(pad[:min(left, len(pad))]); err != nil {
					return
				}
			}
			fmt.Fprint(w, `"}`)
		}))
		defer srv.Close()
		c, err := runcomfy.New(runcomfy.Options{BaseURL: srv.URL})
		if err != nil {
			b.Fatal(err)
		}
		ids := make([]string, calls)
		for i := range ids {
			ids[i] = fmt.Sprint("r", i)
		}
		measure(b, c, ids)
	})
}

func measure(b *testing.B, c *runcomfy.Client, ids []string) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.HeapInuse
	stop := heapPeak()
	b.ResetTimer()
	for range b.N {
		var wg sync.WaitGroup
		for _, id := range ids {
			wg.Go(func() {
				res, err := c.Result(context.Background(), id)
				if err != nil || res.Status != "completed" {
					b.Errorf("result %s: %q, %v", id, res.Status, err)
				}
			})
		}
		wg.Wait()
	}
	b.StopTimer()
	peak := stop()
	b.ReportMetric(float64(before)/1e6, "MB-heap-before")
	b.ReportMetric(float64(peak)/1e6, "MB-heap-peak")
}
