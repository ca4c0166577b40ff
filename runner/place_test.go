package runner

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"comfybatch/lifecycle"
	"comfybatch/runcomfy"
	"comfybatch/runcomfy/runcomfytest"
)

// A job whose submission was refused (a 429, nothing created) is not at
// RunComfy while it waits its Retry-After: its place goes to the next job
// meanwhile, so that at -j 1 the account runs the second job during the
// first's wait instead of standing idle.
func TestARefusedSubmissionLendsItsPlace(t *testing.T) {
	fake := runcomfytest.New(runcomfytest.Config{Token: "runner-test-token", RunTime: 10 * time.Millisecond})
	base, err := url.Parse(fake.Start())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	const retryAfter = 7 * time.Second // no poll waits exactly this
	var posts atomic.Int64
	secondSent := make(chan struct{})
	proxy := httputil.NewSingleHostReverseProxy(base)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/v1/models/") {
			switch posts.Add(1) {
			case 1:
				w.Header().Set("Retry-After", "7")
				w.WriteHeader(http.StatusTooManyRequests)
				return
			case 2:
				defer close(secondSent)
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	e := envBehind(t, fake, ts.URL, "runner-test-token")
	// With a shared rate a 429 lowers it, and only the refused call waits.
	e.client, err = runcomfy.New(runcomfy.Options{BaseURL: ts.URL, Token: "runner-test-token", RPS: 100, BaseDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var lent atomic.Bool
	sum, err := e.run(manifestOf(t, 2, "lend"), func(c *Config) {
		c.Concurrency = 1
		c.Sleep = func(ctx context.Context, d time.Duration) error {
			if d != retryAfter {
				return runcomfy.SleepContext(ctx, d)
			}
			// The refused job waits; the other must be sent meanwhile.
			select {
			case <-secondSent:
				lent.Store(true)
			case <-time.After(5 * time.Second):
			}
			return ctx.Err()
		}
	})
	if err != nil || sum.Counts[lifecycle.Done] != 2 {
		t.Fatalf("run: %v %v", err, sum.Counts)
	}
	if !lent.Load() {
		t.Fatal("the second job was not sent while the first waited out its 429: the place stood idle")
	}
	if got := fake.Stats().Created; got != 2 {
		t.Fatalf("%d jobs created, want 2", got)
	}
}
