package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"comfybatch/lifecycle"
	"comfybatch/runcomfy"
	"comfybatch/runcomfy/runcomfytest"
	"comfybatch/store"
)

// fastClock runs the client's waits (Retry-After pauses and backoffs) a
// hundred times faster than they say, so that a run that honours fifty
// "Retry-After: 1" answers takes half a second, not a minute. Now and Sleep
// agree with each other, which is all the client asks of them.
type fastClock struct{ start time.Time }

const clockSpeed = 100

func (c fastClock) Now() time.Time {
	return c.start.Add(time.Since(c.start) * clockSpeed)
}

func (c fastClock) Sleep(ctx context.Context, d time.Duration) error {
	return runcomfy.SleepContext(ctx, d/clockSpeed)
}

// TestFaultsEveryJobDoneOnceAndIntact runs a whole batch through runner.Run
// against a simulated API that misbehaves in every way SPEC §7 names at once:
// 20% of API calls answered 429 (half with Retry-After), 10% of status and
// result calls answered 500/502/503, 10% of downloads cut short, and some
// jobs whose first output URL has expired. Every job must end done, every
// file must be the server's bytes, and no input may have been submitted
// twice.
func TestFaultsEveryJobDoneOnceAndIntact(t *testing.T) {
	const jobs, outputs = 80, 2
	srv := runcomfytest.New(runcomfytest.Config{
		QueueTime: 30 * time.Millisecond, RunTime: 60 * time.Millisecond, Jitter: 0.8,
		Rate429: 0.2, RetryAfterShare: 0.5, Rate5xx: 0.1, TruncateRate: 0.1, ExpireRate: 0.15,
		OutputsPerJob: outputs, Token: "faults", Seed: 42,
	})
	base := srv.Start()
	t.Cleanup(srv.Close)
	clk := fastClock{start: time.Now()}
	client, err := runcomfy.New(runcomfy.Options{BaseURL: base, Token: "faults", RPS: 0,
		BaseDelay: 100 * time.Millisecond, MaxDelay: 2 * time.Second, // 1 ms and 20 ms in real time
		Now: clk.Now, Sleep: clk.Sleep})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "ledger.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	out := filepath.Join(dir, "out")
	m := manifestOf(t, jobs, "faults")
	sum, err := Run(context.Background(), context.Background(), Config{Manifest: m, Store: st, API: client, HTTP: client.HTTPClient(),
		OutDir: out, Concurrency: 16, PollMax: 50 * time.Millisecond, ProgressEvery: -1})
	if err != nil {
		t.Fatal(err)
	}

	stats := srv.Stats()
	t.Logf("faults injected: %d×429, %d×5xx, %d truncated, %d expired; %d submits for %d jobs",
		stats.Rejected429, stats.Errors5xx, stats.Truncated, stats.Expired, stats.Submits, jobs)
	if stats.Rejected429 == 0 || stats.Errors5xx == 0 || stats.Truncated == 0 || stats.Expired == 0 {
		t.Fatalf("the fake did not inject every kind of fault: %+v", stats)
	}
	if sum.Counts[lifecycle.Done] != jobs {
		st.EachJob(context.Background(), func(j store.Job) error {
			if j.State != lifecycle.Done {
				evs, _ := st.Events(context.Background(), j.ID)
				for _, e := range evs {
					t.Logf("%s: %+v", j.ID, e)
				}
				t.Logf("%+v", j)
			}
			return nil
		})
		t.Fatalf("counts %v, want all %d done", sum.Counts, jobs)
	}
	if d := srv.Duplicates(); d != 0 {
		t.Fatalf("%d duplicate submissions", d)
	}
	byInput := srv.SubmissionsByInput()
	if len(byInput) != jobs {
		t.Fatalf("%d distinct inputs created, want %d", len(byInput), jobs)
	}
	for in, n := range byInput {
		if n != 1 {
			t.Errorf("input %q created %d jobs", in, n)
		}
	}
	if stats.Created != jobs {
		t.Errorf("%d jobs created at the server, want %d", stats.Created, jobs)
	}

	ro, err := store.Open(filepath.Join(dir, "ledger.db"), store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	files := 0
	err = ro.EachJob(context.Background(), func(j store.Job) error {
		fs, err := ro.Files(context.Background(), j.ID)
		if err != nil {
			return err
		}
		if len(fs) != outputs {
			return fmt.Errorf("%s: %d files recorded, want %d", j.ID, len(fs), outputs)
		}
		for _, f := range fs {
			data, err := os.ReadFile(filepath.Join(out, f.Path))
			if err != nil {
				return err
			}
			got := sha256.Sum256(data)
			want := sha256.Sum256(runcomfytest.OutputBytes(j.RequestID, f.N))
			if got != want {
				return fmt.Errorf("%s: %s is not the server's output %d", j.ID, f.Path, f.N)
			}
			if f.SHA256 != hex.EncodeToString(want[:]) || f.Bytes != int64(len(data)) {
				return fmt.Errorf("%s: ledger says %d bytes sha256 %s for %s", j.ID, f.Bytes, f.SHA256, f.Path)
			}
			files++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files != jobs*outputs {
		t.Fatalf("%d files checked, want %d", files, jobs*outputs)
	}
	// No partial file is left behind.
	left, _ := filepath.Glob(filepath.Join(out, ".*.part"))
	if len(left) != 0 {
		t.Fatalf("partial files left: %v", left)
	}
}

// arrivals records when each API request reached the server.
type arrivals struct {
	mu    sync.Mutex
	times []time.Time
}

func (a *arrivals) add(t time.Time) {
	a.mu.Lock()
	a.times = append(a.times, t)
	a.mu.Unlock()
}

func (a *arrivals) count(from, to time.Time) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, t := range a.times {
		if !t.Before(from) && t.Before(to) {
			n++
		}
	}
	return n
}

// TestRetryAfterPausesEveryWorker answers one API call, in the middle of a
// busy run, with 429 and Retry-After: 2, and checks at the server that no API
// request arrives inside that window, from any worker: the pause is the
// account's, not the one call's. Requests already on the wire when the 429
// was written may still land in its first moments; grace covers them.
func TestRetryAfterPausesEveryWorker(t *testing.T) {
	const (
		retryAfter = 2 * time.Second
		grace      = 100 * time.Millisecond
		jobs       = 24
	)
	fake := runcomfytest.New(runcomfytest.Config{QueueTime: 500 * time.Millisecond, RunTime: 3 * time.Second, Token: "faults-test-token-p"})
	var (
		seen      arrivals
		mu        sync.Mutex
		calls     int
		limitedAt time.Time // when the 429 was written
	)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/") {
			fake.ServeHTTP(w, r) // output files are not API calls
			return
		}
		seen.add(time.Now())
		mu.Lock()
		calls++
		limit := calls == 3*jobs // every job submitted and polling by then
		mu.Unlock()
		if limit {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error_message":"rate limited"}`)
			mu.Lock()
			limitedAt = time.Now()
			mu.Unlock()
			return
		}
		fake.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)

	e := envBehind(t, fake, ts.URL, "faults-test-token-p")
	sum, err := e.run(manifestOf(t, jobs, "pause"), func(c *Config) { c.Concurrency = jobs; c.PollMax = 50 * time.Millisecond })
	if err != nil || sum.Counts[lifecycle.Done] != jobs {
		t.Fatalf("run: %v %v", err, sum.Counts)
	}
	mu.Lock()
	at := limitedAt
	mu.Unlock()
	if at.IsZero() {
		t.Fatal("the run ended before the 429 was sent")
	}
	if n := seen.count(at.Add(grace), at.Add(retryAfter)); n != 0 {
		t.Fatalf("%d API requests arrived inside the Retry-After window", n)
	}
	// The control: the same workers were busy before the pause, so the
	// silence is the pause's doing and not a lull.
	if n := seen.count(at.Add(-time.Second), at); n < jobs {
		t.Fatalf("only %d requests in the second before the 429: the test proves nothing", n)
	}
	if n := seen.count(at.Add(retryAfter), at.Add(retryAfter+time.Second)); n == 0 {
		t.Fatal("no request after the window: the run did not resume")
	}
}
