package runner

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"comfybatch/lifecycle"
	"comfybatch/runcomfy"
	"comfybatch/runcomfy/runcomfytest"
	"comfybatch/store"
)

// accountRun runs jobs one-second jobs on an account that runs max at once,
// with downloads that take dl, and reports the wall time and the share of
// the account's places that were busy while it had work (from the first
// submission to the last job's end there: the last downloads come after,
// and no scheduling can keep the account busy during them).
func accountRun(b *testing.B, jobs, max int, dl time.Duration) (time.Duration, float64) {
	srv := runcomfytest.New(runcomfytest.Config{RunTime: time.Second, MaxRunning: max, FileDelay: dl, Token: "throughput-token"})
	url := srv.Start()
	defer srv.Close()
	c, err := runcomfy.New(runcomfy.Options{BaseURL: url, Token: "throughput-token"})
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	st, err := store.Open(filepath.Join(dir, "l.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	start := time.Now()
	sum, err := Run(context.Background(), context.Background(), Config{Manifest: manifestOf(b, jobs, "throughput"), Store: st, API: c,
		HTTP: c.HTTPClient(), OutDir: filepath.Join(dir, "out"), Concurrency: max, PollMax: time.Second, ProgressEvery: -1})
	wall := time.Since(start)
	if err != nil || sum.Counts[lifecycle.Done] != jobs {
		b.Fatalf("run: %v %v", err, sum.Counts)
	}
	return wall, float64(srv.Busy()) / (float64(max) * float64(srv.Span()))
}

// BenchmarkAccountBusy: 48 one-second jobs on an account that runs 8, -j 8,
// downloads of 1.5 s against instant ones. Goals: slow ÷ instant ≤ 1.3, the
// account busy ≥ 90% of the slow run.
//
//	go test -run XXX -bench AccountBusy -benchtime 1x ./runner/
func BenchmarkAccountBusy(b *testing.B) {
	for range b.N {
		fast, _ := accountRun(b, 48, 8, 0)
		slow, busy := accountRun(b, 48, 8, 1500*time.Millisecond)
		b.ReportMetric(fast.Seconds(), "s-instant")
		b.ReportMetric(slow.Seconds(), "s-1.5s-downloads")
		b.ReportMetric(slow.Seconds()/fast.Seconds(), "ratio")
		b.ReportMetric(busy, "busy-share")
	}
}

// BenchmarkRateLimitTrickle: jobs of 0.2–0.8 s on an account that runs 32,
// -j 32, with 2% of API calls answered 429 (half with Retry-After: 1).
// Reported: the wall time over the account's floor (its busy time ÷ 32).
// Goal ≤ 1.3. TRICKLE_NO_429=1 leaves the 429s out; TRICKLE_J=40 runs with
// -j 40, a few jobs queued at RunComfy beyond what it runs.
//
//	go test -run XXX -bench RateLimitTrickle -benchtime 1x ./runner/
func BenchmarkRateLimitTrickle(b *testing.B) {
	const max = 32
	jobs := trickleJobs()
	for range b.N {
		srv := runcomfytest.New(runcomfytest.Config{RunTime: 500 * time.Millisecond, Jitter: 0.6, MaxRunning: max,
			Rate429: rate429(), RetryAfterShare: 0.5, Token: "trickle-token", Seed: 7})
		url := srv.Start()
		c, err := runcomfy.New(runcomfy.Options{BaseURL: url, Token: "trickle-token", RPS: 1000})
		if err != nil {
			b.Fatal(err)
		}
		dir := b.TempDir()
		st, err := store.Open(filepath.Join(dir, "l.db"), store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		sum, err := Run(context.Background(), context.Background(), Config{Manifest: manifestOf(b, jobs, "trickle"), Store: st, API: c,
			HTTP: c.HTTPClient(), OutDir: filepath.Join(dir, "out"), Concurrency: trickleJ(max), PollMax: time.Second, ProgressEvery: -1})
		wall := time.Since(start)
		st.Close()
		srv.Close()
		if err != nil || sum.Counts[lifecycle.Done] != jobs {
			b.Fatalf("run: %v %v", err, sum.Counts)
		}
		floor := srv.Busy() / max
		b.ReportMetric(wall.Seconds(), "s-wall")
		b.ReportMetric(floor.Seconds(), "s-floor")
		b.ReportMetric(wall.Seconds()/floor.Seconds(), "ratio")
		b.ReportMetric(float64(srv.Stats().Rejected429), "429s")
		b.ReportMetric(srv.Lag().Seconds(), "s-lag/job")
		calls := srv.Stats()
		b.ReportMetric(float64(calls.Status+calls.Result)/float64(jobs), "polls/job")
	}
}

// trickleJ is -j: the account's places, or TRICKLE_J to see what a few
// more jobs at RunComfy than it runs at once (a short queue there) give.
func trickleJ(places int) int {
	if j, err := strconv.Atoi(os.Getenv("TRICKLE_J")); err == nil && j > 0 {
		return j
	}
	return places
}

func rate429() float64 {
	if os.Getenv("TRICKLE_NO_429") != "" {
		return 0
	}
	return 0.02
}

// BenchmarkPollingFirstAndSecondRun: 128 jobs of 2–4 s at -j 64 on a fresh
// ledger (the run learns as it goes), then 128 more of the same model on
// that ledger (it starts from what the first learned). Reports status and
// result calls per job of each. Goals: ≤ 2.0 and ≤ 1.5.
//
//	go test -run XXX -bench PollingFirstAndSecondRun -benchtime 1x ./runner/
func BenchmarkPollingFirstAndSecondRun(b *testing.B) {
	const jobs, conc = 128, 64
	for range b.N {
		meter := newPollMeter(runcomfytest.New(runcomfytest.Config{RunTime: 3 * time.Second, Jitter: 1.0 / 3, Token: "bench-token-t"}))
		ts := httptest.NewServer(meter)
		client := pooledClient(b, ts.URL, "bench-token-t", conc, 0)
		dir := b.TempDir()
		perRun := func(prompt string) float64 {
			st, err := store.Open(filepath.Join(dir, "ledger.db"), store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			meter.mu.Lock()
			before := meter.calls
			meter.mu.Unlock()
			sum, err := Run(context.Background(), context.Background(), Config{Manifest: manifestOf(b, jobs, prompt), Store: st, API: client,
				HTTP: client.HTTPClient(), OutDir: filepath.Join(dir, "out"), Concurrency: conc, ProgressEvery: -1})
			st.Close()
			if err != nil || sum.Counts[lifecycle.Done] != jobs {
				b.Fatalf("run: %v %v", err, sum.Counts)
			}
			meter.mu.Lock()
			defer meter.mu.Unlock()
			return float64(meter.calls-before) / jobs
		}
		first := perRun("first")
		second := perRun("second")
		ts.Close()
		b.ReportMetric(first, "calls/job-first-run")
		b.ReportMetric(second, "calls/job-second-run")
	}
}

// trickleJobs is how many jobs the trickle runs: the 5,000, or
// TRICKLE_JOBS for a quicker look.
func trickleJobs() int {
	if n, err := strconv.Atoi(os.Getenv("TRICKLE_JOBS")); err == nil && n > 0 {
		return n
	}
	return 5000
}
