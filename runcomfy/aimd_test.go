package runcomfy

import (
	"context"
	"net/http"
	"net/http/httptest"
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
