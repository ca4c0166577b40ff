package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path"
	"path/filepath"
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
	const retryAfter = 7 * time.Second // no poll waits exactly this
	var posts atomic.Int64
	secondSent := make(chan struct{})
	e := frontedEnv(t, runcomfytest.Config{RunTime: 10 * time.Millisecond}, 100, func(w http.ResponseWriter, r *http.Request, proxy http.Handler) {
		if isSubmit(r) {
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
	})
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
	if got := e.srv.Stats().Created; got != 2 {
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
	var refused atomic.Int64
	thirdSent := make(chan struct{})
	var once sync.Once
	e := frontedEnv(t, runcomfytest.Config{RunTime: 5 * time.Millisecond}, 1000, func(w http.ResponseWriter, r *http.Request, proxy http.Handler) {
		if isSubmit(r) {
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
	})
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
	if got := e.srv.Stats().Created; got != 2 {
		t.Fatalf("%d jobs created under a budget of 2 with one refused %d times, want 2 (%v, %d capped)", got, refusals, sum.Counts, sum.Capped)
	}
	if sum.Counts[lifecycle.Done] != 2 || sum.Counts[lifecycle.Pending] != 1 || sum.Capped != 1 {
		t.Fatalf("counts %v, capped %d; want 2 done, the refused job pending and capped", sum.Counts, sum.Capped)
	}
}

// However often submissions are refused and lend their places, the jobs at
// RunComfy (POSTs on the wire and jobs created whose end no result has told
// yet, counted at the server) are never more than -j.
func TestLentPlacesNeverPassJ(t *testing.T) {
	const j = 3
	var mu sync.Mutex
	at, most := 0, 0
	running := map[string]bool{}
	rng := rand.New(rand.NewPCG(1, 2))
	e := frontedEnv(t, runcomfytest.Config{RunTime: 5 * time.Millisecond, Jitter: 0.8}, 1000, func(w http.ResponseWriter, r *http.Request, proxy http.Handler) {
		post := isSubmit(r)
		result := strings.HasSuffix(r.URL.Path, "/result")
		if !post && !result {
			proxy.ServeHTTP(w, r)
			return
		}
		if post {
			mu.Lock()
			refuse := rng.IntN(2) == 0
			if !refuse {
				at++
				most = max(most, at)
			}
			mu.Unlock()
			if refuse {
				w.Header().Set("Retry-After", "7")
				w.WriteHeader(http.StatusTooManyRequests)
				return
			}
		}
		rec := httptest.NewRecorder()
		proxy.ServeHTTP(rec, r)
		var answer struct {
			RequestID string `json:"request_id"`
			Status    string `json:"status"`
		}
		json.Unmarshal(rec.Body.Bytes(), &answer)
		mu.Lock()
		switch id := path.Base(path.Dir(r.URL.Path)); {
		case post && answer.RequestID != "":
			running[answer.RequestID] = true
		case post:
			at--
		case running[id] && runcomfy.Terminal(strings.ToLower(answer.Status)):
			delete(running, id)
			at--
		}
		mu.Unlock()
		maps.Copy(w.Header(), rec.Header())
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	})
	sum, err := e.run(manifestOf(t, 60, "bound"), func(c *Config) {
		c.Concurrency = j
		c.Sleep = func(ctx context.Context, d time.Duration) error {
			if d == 7*time.Second { // a Retry-After: a moment, so the refused go back soon
				d = time.Duration(rand.IntN(3)) * time.Millisecond
			}
			return runcomfy.SleepContext(ctx, d)
		}
	})
	if err != nil || sum.Counts[lifecycle.Done] != 60 {
		t.Fatalf("run: %v %v", err, sum.Counts)
	}
	if most > j {
		t.Fatalf("%d jobs at RunComfy at once at -j %d", most, j)
	}
}

// While a refused submission waits out its Retry-After (up to minutes), the
// ledger says pending, not submitting: a crash in the wait leaves the job to
// be submitted again by the next run, where submitting would have made it
// unknown (and kept it from being submitted without --resubmit-unknown),
// though the 429 proved nothing was created.
func TestARefusedSubmissionWaitsPending(t *testing.T) {
	var posts atomic.Int64
	e := frontedEnv(t, runcomfytest.Config{RunTime: 10 * time.Millisecond}, 100, func(w http.ResponseWriter, r *http.Request, proxy http.Handler) {
		if isSubmit(r) && posts.Add(1) == 1 {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		proxy.ServeHTTP(w, r)
	})
	var during lifecycle.State
	sum, err := e.run(manifestOf(t, 1, "wait"), func(c *Config) {
		st := c.Store
		c.Sleep = func(ctx context.Context, d time.Duration) error {
			if d == 7*time.Second {
				j, err := st.Job(ctx, "job-000")
				if err != nil {
					return err
				}
				during = j.State
				return nil
			}
			return runcomfy.SleepContext(ctx, d)
		}
	})
	if err != nil || sum.Counts[lifecycle.Done] != 1 {
		t.Fatalf("run: %v %v", err, sum.Counts)
	}
	if during != lifecycle.Pending {
		t.Fatalf("during the Retry-After wait the ledger said %q, want pending", during)
	}
	if got := e.srv.Stats().Created; got != 1 {
		t.Fatalf("%d created, want 1", got)
	}
}

// frontedEnv is an env whose client has a shared rate of rps (so that a 429
// lowers it and only the refused call waits) and reaches the simulated API
// through front, which answers a request itself or hands it to api.
func frontedEnv(t *testing.T, cfg runcomfytest.Config, rps float64, front func(w http.ResponseWriter, r *http.Request, api http.Handler)) *env {
	t.Helper()
	cfg.Token = "runner-test-token"
	fake := runcomfytest.New(cfg)
	base, err := url.Parse(fake.Start())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	api := httputil.NewSingleHostReverseProxy(base)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { front(w, r, api) }))
	t.Cleanup(ts.Close)
	c, err := runcomfy.New(runcomfy.Options{BaseURL: ts.URL, Token: cfg.Token, RPS: rps, BaseDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	return &env{t: t, srv: fake, client: c, dir: dir, ledger: filepath.Join(dir, "ledger.db")}
}

// isSubmit says whether r is a submission's POST.
func isSubmit(r *http.Request) bool {
	return r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/v1/models/")
}
