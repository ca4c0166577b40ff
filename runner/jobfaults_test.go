package runner

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // to plant a fault in the ledger

	"comfybatch/lifecycle"
	"comfybatch/runcomfy"
	"comfybatch/runcomfy/runcomfytest"
	"comfybatch/store"
)

// logBuffer collects a run's log lines; workers log concurrently.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestPollErrorLeavesJobInFlight: a result endpoint that answers an error
// which is neither transient nor RunComfy's "request missing" says nothing about the job, which
// may still be running and billed. The run must leave it queued/running (not
// failed), so that a later run with --retry-failed polls it instead of paying
// for it a second time, and finishes it once the endpoint answers again.
func TestPollErrorLeavesJobInFlight(t *testing.T) {
	cases := []struct {
		name   string
		status int
		body   string
	}{
		{"403", http.StatusForbidden, `{"error_code":403001,"error_message":"request does not belong to you"}`},
		{"2xx with error_code", http.StatusOK, `{"error_code":403001,"error_message":"request does not belong to you"}`},
		{"malformed 2xx", http.StatusOK, `<html>upstream says hello</html>`},
		// A 404 that is not RunComfy's 404001: a proxy's page, another host.
		{"bare 404", http.StatusNotFound, `<html>Not Found</html>`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := runcomfytest.New(runcomfytest.Config{QueueTime: 20 * time.Millisecond, RunTime: 20 * time.Millisecond, Token: "jobfaults-token-pe"})
			var deny atomic.Bool
			var denied atomic.Int64
			deny.Store(true)
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if deny.Load() && strings.HasPrefix(r.URL.Path, "/v1/requests/") && strings.HasSuffix(r.URL.Path, "/result") {
					denied.Add(1)
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(tc.status)
					io.WriteString(w, tc.body)
					return
				}
				fake.ServeHTTP(w, r)
			}))
			t.Cleanup(ts.Close)
			e := envBehind(t, fake, ts.URL, "jobfaults-token-pe")
			m := manifestOf(t, 1, "pe")
			const id = "job-000"

			// Run 1: submitted once, every poll refused.
			var logs logBuffer
			sum, err := e.run(m, func(c *Config) { c.Log = logs.logger() })
			if err != nil {
				t.Fatalf("run 1: %v", err)
			}
			j := e.jobs()[id]
			if j.State != lifecycle.Queued && j.State != lifecycle.Running {
				t.Fatalf("run 1 left the job %s (%q), want queued or running: it may still be running and billed", j.State, j.Error)
			}
			if sum.InFlight != 1 || sum.Counts[lifecycle.Failed] != 0 {
				t.Fatalf("run 1 summary %+v, want the job counted in flight", sum)
			}
			if n := fake.Stats().Submits; n != 1 {
				t.Fatalf("run 1: %d submissions, want 1", n)
			}
			if n := denied.Load(); n != lifecycle.ErrorTries {
				t.Fatalf("run 1: %d refused polls, want %d", n, lifecycle.ErrorTries)
			}
			out := logs.String()
			if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "job="+id) ||
				!strings.Contains(out, "request_id="+j.RequestID) || !strings.Contains(out, "next run polls it again") {
				t.Fatalf("run 1 did not warn with the job and request id:\n%s", out)
			}

			// Run 2, --retry-failed, still refused: polled, not resubmitted.
			denied.Store(0)
			sum, err = e.run(m, func(c *Config) { c.RetryFailed = true })
			if err != nil {
				t.Fatalf("run 2: %v", err)
			}
			if j2 := e.jobs()[id]; !j2.State.InFlight() || j2.RequestID != j.RequestID || j2.Attempts != 1 {
				t.Fatalf("run 2 left %+v", j2)
			}
			if sum.Submitted != 0 || fake.Stats().Submits != 1 {
				t.Fatalf("run 2 resubmitted: summary %+v, %d submissions at the server", sum, fake.Stats().Submits)
			}
			if n := denied.Load(); n != lifecycle.ErrorTries {
				t.Fatalf("run 2: %d refused polls, want %d", n, lifecycle.ErrorTries)
			}

			// Run 3, --retry-failed, the endpoint answers again: done, once.
			deny.Store(false)
			sum, err = e.run(m, func(c *Config) { c.RetryFailed = true })
			if err != nil {
				t.Fatalf("run 3: %v", err)
			}
			j3 := e.jobs()[id]
			if j3.State != lifecycle.Done || j3.RequestID != j.RequestID || sum.Counts[lifecycle.Done] != 1 || sum.InFlight != 0 {
				t.Fatalf("run 3 left %+v, summary %+v", j3, sum)
			}
			if n, d := fake.Stats().Submits, fake.Duplicates(); n != 1 || d != 0 {
				t.Fatalf("%d submissions, %d duplicates; want 1 and 0", n, d)
			}
		})
	}
}

// failingSaves plants a trigger in the ledger that fails every write saving a
// request id (Store.Submitted) until it is removed: a ledger write that fails
// after the POST succeeded, as a failed group commit does.
func failingSaves(t *testing.T, ledger string) (remove func()) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+ledger+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TRIGGER fail_save BEFORE UPDATE OF request_id ON jobs
		WHEN OLD.request_id IS NULL AND NEW.request_id IS NOT NULL
		BEGIN SELECT RAISE(ABORT, 'injected ledger failure'); END`); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			if _, err := db.Exec("DROP TRIGGER fail_save"); err != nil {
				t.Error(err)
			}
		})
	}
}

// interruptAfterSubmit cancels the run, as a Ctrl-C would, the moment a
// submission has come back from the API.
type interruptAfterSubmit struct {
	API
	cancel context.CancelFunc
}

func (a interruptAfterSubmit) Submit(ctx context.Context, modelID string, input any, o runcomfy.SubmitOptions) (runcomfy.SubmitResponse, error) {
	resp, err := a.API.Submit(ctx, modelID, input, o)
	a.cancel()
	return resp, err
}

// saveRun is what runSubmitOnce saw.
type saveRun struct {
	sum  Summary
	err  error
	job  store.Job // the ledger's view of the job after the run
	logs string
	srv  *runcomfytest.Server
}

// runSubmitOnce submits one job against a ledger whose saves of a request id
// fail until remove is called, with the run interrupted right after the POST.
// sleep builds the run's Sleep.
func runSubmitOnce(t *testing.T, sleep func(remove func()) func(context.Context, time.Duration) error) saveRun {
	t.Helper()
	e := newEnv(t, runcomfytest.Config{})
	st, err := store.Open(e.ledger, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	remove := failingSaves(t, e.ledger)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs logBuffer
	sum, runErr := Run(ctx, context.Background(), Config{Manifest: manifestOf(t, 1, "save"), Store: st,
		API: interruptAfterSubmit{API: e.client, cancel: cancel}, HTTP: e.client.HTTPClient(),
		OutDir: filepath.Join(e.dir, "out"), Concurrency: 1, SubmitOnly: true, ProgressEvery: -1,
		Log: logs.logger(), Sleep: sleep(remove)})
	j, err := st.Job(context.Background(), "job-000")
	if err != nil {
		t.Fatal(err)
	}
	return saveRun{sum: sum, err: runErr, job: j, logs: logs.String(), srv: e.srv}
}

// TestRequestIDSavedAfterAFailedWrite: the POST succeeded, the write saving
// its request id failed once, and the user pressed Ctrl-C meanwhile. The id
// is paid for: the write is tried again, waiting with a context the
// interrupt does not cancel, and ends up in the ledger.
func TestRequestIDSavedAfterAFailedWrite(t *testing.T) {
	var sleeps atomic.Int64
	got := runSubmitOnce(t, func(remove func()) func(context.Context, time.Duration) error {
		return func(ctx context.Context, d time.Duration) error {
			sleeps.Add(1)
			if ctx.Err() != nil {
				t.Errorf("the wait before saving the request id again was cancelled by the interrupt: %v", ctx.Err())
			}
			remove() // the ledger works again
			return nil
		}
	})
	sum, j, logs, srv := got.sum, got.job, got.logs, got.srv
	if !errors.Is(got.err, ErrInterrupted) {
		t.Fatalf("run: %v, want ErrInterrupted", got.err)
	}
	jobs := srv.Jobs()
	if len(jobs) != 1 || srv.Stats().Submits != 1 {
		t.Fatalf("server jobs %+v", jobs)
	}
	if j.State != lifecycle.Queued || j.RequestID != jobs[0].RequestID {
		t.Fatalf("ledger job %+v, want queued with request %s", j, jobs[0].RequestID)
	}
	if sum.Submitted != 1 || sleeps.Load() != 1 {
		t.Fatalf("summary %+v, %d waits; want 1 submission saved after 1 wait", sum, sleeps.Load())
	}
	if !strings.Contains(logs, "request_id="+j.RequestID) || !strings.Contains(logs, "injected ledger failure") {
		t.Fatalf("the failed try was not logged with the request id:\n%s", logs)
	}
}

// TestRequestIDLoggedWhenItCannotBeSaved: when every try fails the run stops
// with the error, and the request id is in the log at Error level, for the
// user to find the job that was created and may be billed.
func TestRequestIDLoggedWhenItCannotBeSaved(t *testing.T) {
	var sleeps atomic.Int64
	got := runSubmitOnce(t, func(func()) func(context.Context, time.Duration) error {
		return func(context.Context, time.Duration) error { sleeps.Add(1); return nil }
	})
	err, j, logs, srv := got.err, got.job, got.logs, got.srv
	jobs := srv.Jobs()
	if len(jobs) != 1 {
		t.Fatalf("server jobs %+v", jobs)
	}
	rid := jobs[0].RequestID
	if err == nil || !strings.Contains(err.Error(), rid) {
		t.Fatalf("run: %v, want an error naming request %s", err, rid)
	}
	if j.State != lifecycle.Submitting || j.RequestID != "" {
		t.Fatalf("ledger job %+v, want still submitting (unknown on the next start)", j)
	}
	if n := sleeps.Load(); n != int64(len(saveWaits)) {
		t.Fatalf("%d waits, want %d (one between each of %d tries)", n, len(saveWaits), len(saveWaits)+1)
	}
	found := false
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "level=ERROR") && strings.Contains(line, "job=job-000") && strings.Contains(line, "request_id="+rid) {
			found = true
		}
	}
	if !found {
		t.Fatalf("no Error line with the job and request id:\n%s", logs)
	}
}

// TestRetryFailedTakesOnlyEarlierFailures: with --retry-failed, a job that
// fails during the run is not resubmitted by that same run (the flag is for
// jobs that failed in an earlier one); -j 1 makes the old race certain.
func TestRetryFailedTakesOnlyEarlierFailures(t *testing.T) {
	e := newEnv(t, runcomfytest.Config{FailedStatusRate: 1, QueueTime: 20 * time.Millisecond})
	m := manifestOf(t, 2, "fails")
	if _, err := e.run(m, func(c *Config) { c.SubmitOnly = true }); err != nil {
		t.Fatal(err)
	}
	sum, err := e.run(m, func(c *Config) { c.RetryFailed, c.Concurrency = true, 1 })
	if err != nil {
		t.Fatal(err)
	}
	if sum.Submitted != 0 || sum.Counts[lifecycle.Failed] != 2 || e.srv.Stats().Created != 2 {
		t.Fatalf("run that saw the jobs fail: %+v, fake created %d; want nothing resubmitted", sum, e.srv.Stats().Created)
	}
	// A later run with the flag does resubmit them.
	if sum, err = e.run(m, func(c *Config) { c.RetryFailed = true }); err != nil || sum.Submitted != 2 || e.srv.Stats().Created != 4 {
		t.Fatalf("next run with --retry-failed: %+v, %v, fake created %d; want 2 more", sum, err, e.srv.Stats().Created)
	}
}

// TestMissingRequestFails: RunComfy's own "request missing or expired"
// (404001), given on every try, is the one 404 that fails a job.
func TestMissingRequestFails(t *testing.T) {
	a := newEnv(t, runcomfytest.Config{QueueTime: time.Hour})
	m := manifestOf(t, 2, "gone")
	if _, err := a.run(m, func(c *Config) { c.SubmitOnly = true }); err != nil {
		t.Fatal(err)
	}
	b := newEnv(t, runcomfytest.Config{}) // another server: it knows neither request
	b.ledger = a.ledger

	// Moments after the submission, 404001 may be the API not having
	// caught up with the POST: the jobs are polled on, not failed. (The
	// run is stopped after a few seconds of that.)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := store.Open(b.ledger, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	early, err := Run(ctx, context.Background(), Config{Manifest: m, Store: st, API: b.client, HTTP: b.client.HTTPClient(),
		OutDir: filepath.Join(b.dir, "out"), PollMax: 50 * time.Millisecond, ProgressEvery: -1})
	st.Close()
	if !errors.Is(err, ErrInterrupted) || early.Counts[lifecycle.Queued] != 2 || b.srv.Stats().Result < 4 {
		t.Fatalf("inside the grace period: %v %+v after %d polls; want both still queued", err, early.Counts, b.srv.Stats().Result)
	}

	// Long past the submission, 404001 every time is the truth.
	later := func() time.Time { return time.Now().Add(lifecycle.MissingGrace + time.Minute) }
	sum, err := b.run(m, func(c *Config) { c.Now = later })
	if err != nil {
		t.Fatal(err)
	}
	if sum.Counts[lifecycle.Failed] != 2 || b.srv.Stats().Submits != 0 {
		t.Fatalf("%+v; want both failed, nothing submitted", sum)
	}
	if j := b.jobs()["job-000"]; !strings.Contains(j.Error, "missing or expired") {
		t.Fatalf("error %q", j.Error)
	}
	// Jobs that went missing teach nothing of how long the model takes.
	ro, err := store.Open(b.ledger, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if learned, err := ro.Durations(context.Background()); err != nil || len(learned) != 0 {
		t.Fatalf("durations learned from missing requests: %v %v", learned, err)
	}
}

// TestChangedInFlightIsCollectedFirst: a job edited while its request is at
// RunComfy keeps that request, which is paid for: the run collects it (file,
// cost) and submits nothing; the run after that submits the new input.
func TestChangedInFlightIsCollectedFirst(t *testing.T) {
	e := newEnv(t, runcomfytest.Config{QueueTime: 30 * time.Millisecond, CostUSD: 0.25})
	if _, err := e.run(manifestOf(t, 1, "first"), func(c *Config) { c.SubmitOnly = true }); err != nil {
		t.Fatal(err)
	}
	old := e.jobs()["job-000"].RequestID
	edited := manifestOf(t, 1, "edited")
	sum, err := e.run(edited, nil)
	if err != nil {
		t.Fatal(err)
	}
	j := e.jobs()["job-000"]
	if sum.Submitted != 0 || sum.Sync.Deferred != 1 || j.State != lifecycle.Done || j.RequestID != old || j.CostUSD == nil {
		t.Fatalf("run after the edit: %+v; job %+v; want the earlier request %s collected, nothing submitted", sum, j, old)
	}
	sum, err = e.run(edited, nil)
	if err != nil {
		t.Fatal(err)
	}
	j = e.jobs()["job-000"]
	if sum.Submitted != 1 || sum.Sync.Changed != 1 || j.State != lifecycle.Done || j.RequestID == old || !strings.Contains(string(j.Input), "edited") {
		t.Fatalf("next run: %+v; job %+v; want the new input submitted and done", sum, j)
	}
	if got := e.srv.Stats().Created; got != 2 {
		t.Fatalf("the fake created %d jobs, want 2 (one per input)", got)
	}
}

// TestSubmitOutcome: where a failed submission leaves its job. Only an
// answer proving no job was created returns it to pending; only a 4xx that
// rejects the input for good fails it; anything that may have created a job
// parks it as unknown, which no flag but --resubmit-unknown submits again.
func TestSubmitOutcome(t *testing.T) {
	for _, c := range []struct {
		err  error
		want lifecycle.State
	}{
		{&runcomfy.Error{HTTPStatus: 429}, lifecycle.Pending},
		{&runcomfy.Error{HTTPStatus: 503}, lifecycle.Unknown}, // a gateway may answer 503 after creation
		{&runcomfy.Error{HTTPStatus: 403}, lifecycle.Pending}, // account error: stops the run
		{&runcomfy.Error{HTTPStatus: 200, Code: 500001}, lifecycle.Unknown},
		{&runcomfy.Error{NotSent: true}, lifecycle.Pending},
		{&runcomfy.Error{HTTPStatus: 401}, lifecycle.Pending}, // account error: stops the run
		{&runcomfy.Error{HTTPStatus: 400, Code: 400001}, lifecycle.Failed},
		{&runcomfy.Error{HTTPStatus: 422}, lifecycle.Failed},
		{&runcomfy.Error{HTTPStatus: 200, Code: 400001}, lifecycle.Failed},
		{&runcomfy.Error{HTTPStatus: 408}, lifecycle.Unknown},
		{&runcomfy.Error{HTTPStatus: 500}, lifecycle.Unknown},
		{&runcomfy.Error{HTTPStatus: 502}, lifecycle.Unknown},
		{&runcomfy.Error{HTTPStatus: 504}, lifecycle.Unknown},
		{&runcomfy.Error{}, lifecycle.Unknown}, // a cut after sending, a timeout
		{errors.New("the API accepted the submission but returned no request id"), lifecycle.Unknown},
	} {
		a := runcomfy.AnswerOf(c.err)
		if got := lifecycle.Submit(a, "").To; got != c.want {
			t.Errorf("%#v: %s, want %s", c.err, got, c.want)
		}
		// The client retries a submit by lifecycle's rule; were it to
		// decide apart, it would repeat a POST lifecycle calls unknown.
		if runcomfy.SubmitNotCreated(c.err) != lifecycle.SubmitRetryable(a, "") {
			t.Errorf("%#v: the client's SubmitNotCreated = %v, lifecycle.SubmitRetryable = %v", c.err, runcomfy.SubmitNotCreated(c.err), lifecycle.SubmitRetryable(a, ""))
		}
	}
}

// A second signal right after RunComfy answered a POST: the request id is
// saved all the same (the write heeds no signal). Found in review: nothing
// failed when that write used the work context.
func TestSecondSignalRightAfterTheAnswerKeepsTheID(t *testing.T) {
	e := newEnv(t, runcomfytest.Config{})
	st, err := store.Open(e.ledger, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	work, stopWork := context.WithCancel(context.Background())
	intake, stopIntake := context.WithCancel(work)
	defer stopIntake()
	Run(intake, work, Config{Manifest: manifestOf(t, 1, "x"), Store: st,
		API: interruptAfterSubmit{API: e.client, cancel: stopWork}, HTTP: e.client.HTTPClient(),
		OutDir: filepath.Join(e.dir, "out"), Concurrency: 1, ProgressEvery: -1})
	j, err := st.Job(context.Background(), "job-000")
	if err != nil || j.RequestID == "" || j.State != lifecycle.Queued || e.srv.Stats().Created != 1 {
		t.Fatalf("second signal right after the answer: job %s with request %q (%v)", j.State, j.RequestID, err)
	}
}

// transient503 answers every result with 503 and counts.
type transient503 struct {
	API
	polls atomic.Int64
}

func (a *transient503) Result(ctx context.Context, id string) (runcomfy.Result, error) {
	a.polls.Add(1)
	return runcomfy.Result{}, &runcomfy.Error{Op: "result", HTTPStatus: 503}
}

// Polls that keep failing as in an outage are waited out for
// lifecycle.TransientLimit, then the job is left in flight and the run ends
// (found in review: it polled forever).
func TestOutageIsWaitedOutNotForever(t *testing.T) {
	e := newEnv(t, runcomfytest.Config{})
	st, err := store.Open(e.ledger, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	api := &transient503{API: e.client}
	var now atomic.Int64 // a clock the waits move: a minute a poll
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	now.Store(time.Now().UnixNano())
	sum, err := Run(context.Background(), context.Background(), Config{Manifest: manifestOf(t, 1, "x"), Store: st, API: api, HTTP: e.client.HTTPClient(),
		OutDir: filepath.Join(e.dir, "out"), Concurrency: 1, ProgressEvery: -1, Now: clock,
		Sleep: func(ctx context.Context, d time.Duration) error { now.Add(int64(time.Minute)); return ctx.Err() }})
	if err != nil || sum.Counts[lifecycle.Queued] != 1 {
		t.Fatalf("%v %+v: want the job left queued", err, sum.Counts)
	}
	if n := api.polls.Load(); n < 50 || n > 70 {
		t.Fatalf("%d polls a minute apart before the job was parked, want about an hour's", n)
	}
}

// atTheDoor is an API at which the first signal lands after the client let
// the POST go and before BeforeSend ran.
type atTheDoor struct {
	*scripted
	stop context.CancelFunc
}

func (a *atTheDoor) Submit(ctx context.Context, model string, input any, o runcomfy.SubmitOptions) (runcomfy.SubmitResponse, error) {
	a.stop()
	return a.scripted.Submit(ctx, model, input, o)
}

// A first signal at the door: BeforeSend refuses, so nothing is sent and
// the job stays pending, not submitting (which the next start would call
// unknown, parked until --resubmit-unknown, for a POST that never left).
func TestIntakeEndingAtTheDoorLeavesTheJobPending(t *testing.T) {
	e := newFilesEnv(t, func(prompt, req string) []string { return []string{"data:video/mp4;base64,AAAA"} })
	intake, stop := context.WithCancel(context.Background())
	defer stop()
	st, err := store.Open(e.ledger, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sum, err := Run(intake, context.Background(), Config{Manifest: jobsManifest(t, "a=x"), Store: st, API: &atTheDoor{e.api, stop},
		HTTP: http.DefaultClient, OutDir: e.out, Concurrency: 1, PollMax: 20 * time.Millisecond, ProgressEvery: -1, StallTimeout: time.Minute})
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("run: %v, want interrupted", err)
	}
	j, err := st.Job(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	if j.State != lifecycle.Pending || e.api.n != 0 || sum.Submitted != 0 {
		t.Fatalf("job %s, %d POSTs, %d submitted; want pending and nothing sent", j.State, e.api.n, sum.Submitted)
	}
}
