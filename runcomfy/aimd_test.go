package runcomfy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A 429 lowers the shared rate instead of pausing every call, and answers
// that are let through raise it back to what was asked for.
func TestRateLimitAdaptsInsteadOfPausing(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte(`{"error_message":"slow down"}`))
			return
		}
		w.Write([]byte(`{"status":"in_queue"}`))
	}))
	defer srv.Close()
	var slept []time.Duration
	c := newTestClient(t, Options{BaseURL: srv.URL, RPS: 1000, Sleep: func(ctx context.Context, d time.Duration) error {
		slept = append(slept, d)
		return nil
	}})
	if _, err := c.Status(context.Background(), "r1"); err != nil {
		t.Fatal(err)
	}
	// Halved by the 429, then raised a step by the retry that went through.
	if got := float64(c.limiter.Limit()); got != 500+1000.0/64 {
		t.Fatalf("rate after one 429 and one answer: %v, want %v", got, 500+1000.0/64)
	}
	c.mu.Lock()
	paused := c.pauseUntil.After(time.Now())
	c.mu.Unlock()
	if paused {
		t.Fatal("a 429 paused every call")
	}
	for range 40 {
		if _, err := c.Status(context.Background(), "r1"); err != nil {
			t.Fatal(err)
		}
	}
	if got := float64(c.limiter.Limit()); got != 1000 {
		t.Fatalf("rate after 40 answers let through: %v, want back at 1000", got)
	}
	if len(slept) == 0 {
		t.Fatal("the refused call did not wait before trying again")
	}
}

// A burst of 429s answering calls sent together: each call backs off by its
// own attempt, not by how many other calls were refused (found in review:
// with a rate set, the sixteenth refusal slept 30 s, the most there is).
func TestRateLimitBurstBacksOffPerCall(t *testing.T) {
	const calls = 16
	var arrived atomic.Int64
	all := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := arrived.Add(1)
		if n > calls {
			w.Write([]byte(`{"status":"in_queue"}`))
			return
		}
		if n == calls {
			close(all)
		}
		select { // every call is refused, and only once all were sent
		case <-all:
		case <-r.Context().Done():
			return
		}
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	clk := newClock()
	c := newTestClient(t, Options{BaseURL: srv.URL, RPS: 1000, Sleep: clk.Sleep, Now: clk.Now})
	var wg sync.WaitGroup
	for range calls {
		wg.Go(func() {
			if _, err := c.Status(context.Background(), "r1"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	slept := clk.Slept()
	if len(slept) != calls {
		t.Fatalf("%d waits for %d refused calls", len(slept), calls)
	}
	for _, d := range slept {
		if d > c.baseDelay {
			t.Errorf("a first refusal waited %v, over the first backoff's %v: %v", d, c.baseDelay, slept)
			break
		}
	}
}

// A call refused by a 429 without Retry-After, on a shared rate: the rate
// is lowered, and the call's first retry goes at that rate at once (an
// occasional 429 should cost one request's spacing, not a backoff); a call
// refused again backs off as any other, one step behind.
func TestFirstRetryOfA429GoesAtTheLoweredRate(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 3 {
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.Write([]byte(`{"status":"in_queue"}`))
	}))
	defer srv.Close()
	var slept []time.Duration
	c := newTestClient(t, Options{BaseURL: srv.URL, RPS: 1000, BaseDelay: time.Second, MaxDelay: time.Minute,
		Rand: func() float64 { return 0.5 },
		Sleep: func(ctx context.Context, d time.Duration) error {
			slept = append(slept, d)
			return nil
		}})
	if _, err := c.Status(context.Background(), "r1"); err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{0, 500 * time.Millisecond, time.Second}
	if len(slept) != len(want) {
		t.Fatalf("waits %v, want %v", slept, want)
	}
	for i := range want {
		if slept[i] != want[i] {
			t.Fatalf("waits %v, want %v", slept, want)
		}
	}
}
