package runner

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
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

// Under --max-submissions a refused submission lends its submission with its
// place: the job let in meanwhile is not capped on a submission that, refused
// throughout, never happens (at -j 1, a budget of 2 and the second job always
// refused, two jobs are created, as before places were lent); and one let
// through on its retry after the budget went to another is capped, never a
// submission over the budget.
func TestARefusedSubmissionLendsItsSubmissionUnderACap(t *testing.T) {
	for _, refusals := range []int64{1, 100} {
		t.Run(fmt.Sprintf("refused%d", refusals), func(t *testing.T) { testLendUnderACap(t, refusals) })
	}
}

func testLendUnderACap(t *testing.T, refusals int64) {
	fake := runcomfytest.New(runcomfytest.Config{Token: "runner-test-token", RunTime: 5 * time.Millisecond})
	base, err := url.Parse(fake.Start())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	var refused atomic.Int64
	thirdSent := make(chan struct{})
	var once sync.Once
	proxy := httputil.NewSingleHostReverseProxy(base)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/v1/models/") {
			b, err := io.ReadAll(r.Body)
			if err != nil {
				t.Error(err)
			}
			r.Body = io.NopCloser(bytes.NewReader(b))
			switch {
			case strings.Contains(string(b), `"seed":1`) && refused.Add(1) <= refusals:
				w.Header().Set("Retry-After", "7")
				w.WriteHeader(http.StatusTooManyRequests)
				return
			case strings.Contains(string(b), `"seed":2`):
				defer once.Do(func() { close(thirdSent) })
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	e := envBehind(t, fake, ts.URL, "runner-test-token")
	e.client, err = runcomfy.New(runcomfy.Options{BaseURL: ts.URL, Token: "runner-test-token", RPS: 1000, BaseDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := e.run(manifestOf(t, 3, "cap"), func(c *Config) {
		c.Concurrency, c.MaxSubmissions = 1, 2
		c.Sleep = func(ctx context.Context, d time.Duration) error {
			if d != 7*time.Second {
				return runcomfy.SleepContext(ctx, d)
			}
			// The refused job wakes once the third job was sent (or
			// could not be).
			select {
			case <-thirdSent:
			case <-time.After(2 * time.Second):
			}
			return ctx.Err()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := fake.Stats().Created; got != 2 {
		t.Fatalf("%d jobs created under a budget of 2 with one refused %d times, want 2 (%v, %d capped)", got, refusals, sum.Counts, sum.Capped)
	}
	if sum.Counts[lifecycle.Done] != 2 || sum.Counts[lifecycle.Pending] != 1 || sum.Capped != 1 {
		t.Fatalf("counts %v, capped %d; want 2 done, the refused job pending and capped", sum.Counts, sum.Capped)
	}
}
