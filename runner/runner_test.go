package runner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"comfybatch/lifecycle"
	"comfybatch/manifest"
	"comfybatch/runcomfy"
	"comfybatch/runcomfy/runcomfytest"
	"comfybatch/store"
)

const model = "wan-ai/wan-2-6/flash/image-to-video"

// env is one runner under test: a fake API over httptest, a ledger and an
// output folder in a temp dir.
type env struct {
	t      *testing.T
	srv    *runcomfytest.Server
	client *runcomfy.Client
	dir    string
	ledger string
}

func newEnv(t *testing.T, cfg runcomfytest.Config) *env {
	t.Helper()
	cfg.Token = "runner-test-token"
	srv := runcomfytest.New(cfg)
	url := srv.Start()
	t.Cleanup(srv.Close)
	c, err := runcomfy.New(runcomfy.Options{BaseURL: url, Token: cfg.Token, BaseDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	return &env{t: t, srv: srv, client: c, dir: dir, ledger: filepath.Join(dir, "ledger.db")}
}

// envBehind is an env whose client talks to url, a test server put in front
// of fake to change some of its answers.
func envBehind(t *testing.T, fake *runcomfytest.Server, url, token string) *env {
	t.Helper()
	c, err := runcomfy.New(runcomfy.Options{BaseURL: url, Token: token, BaseDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	return &env{t: t, srv: fake, client: c, dir: dir, ledger: filepath.Join(dir, "ledger.db")}
}

func manifestOf(t testing.TB, n int, prompt string) *manifest.Manifest {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "model: %s\njobs:\n", model)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - id: job-%03d\n    input: {prompt: %q, seed: %d}\n", i, prompt, i)
	}
	m, err := manifest.Parse("jobs.yaml", []byte(b.String()), manifest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// run opens the ledger, runs, closes it, and returns the summary.
func (e *env) run(m *manifest.Manifest, mod func(*Config)) (Summary, error) {
	e.t.Helper()
	st, err := store.Open(e.ledger, store.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	defer st.Close()
	cfg := Config{Manifest: m, Store: st, API: e.client, HTTP: e.client.HTTPClient(), OutDir: filepath.Join(e.dir, "out"),
		Concurrency: 8, PollMax: 50 * time.Millisecond, ProgressEvery: -1}
	if mod != nil {
		mod(&cfg)
	}
	return Run(context.Background(), context.Background(), cfg)
}

func (e *env) jobs() map[string]store.Job {
	e.t.Helper()
	st, err := store.Open(e.ledger, store.Options{ReadOnly: true})
	if err != nil {
		e.t.Fatal(err)
	}
	defer st.Close()
	m := map[string]store.Job{}
	st.EachJob(context.Background(), func(j store.Job) error { m[j.ID] = j; return nil })
	return m
}

func TestRunCompletesAndVerifies(t *testing.T) {
	e := newEnv(t, runcomfytest.Config{QueueTime: 20 * time.Millisecond, RunTime: 30 * time.Millisecond, ExtraStatus: "warming_up", CostUSD: 0.5})
	sum, err := e.run(manifestOf(t, 10, "a fox"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Counts[lifecycle.Done] != 10 || sum.Submitted != 10 {
		t.Fatalf("summary %+v", sum)
	}
	for id, j := range e.jobs() {
		data, err := os.ReadFile(filepath.Join(e.dir, "out", id+".mp4"))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		want := sha256.Sum256(runcomfytest.OutputBytes(j.RequestID, 0))
		if sum != want {
			t.Fatalf("%s: wrong bytes", id)
		}
		if j.CostUSD == nil || *j.CostUSD != 0.5 {
			t.Fatalf("%s: cost %v", id, j.CostUSD)
		}
	}
}

func TestFailedResultsAreRecordedWithTheServerMessage(t *testing.T) {
	e := newEnv(t, runcomfytest.Config{FailureRate: 0.5, FailedStatusRate: 0.3, Seed: 9})
	sum, err := e.run(manifestOf(t, 30, "x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Counts[lifecycle.Failed] == 0 || sum.Counts[lifecycle.Done] == 0 {
		t.Fatalf("want some failed and some done: %v", sum.Counts)
	}
	// Each failure carries the fake's own words: an empty output's error
	// string as is, a failed job's error object as its JSON.
	var emptyOutputs, failedStatuses int
	for id, j := range e.jobs() {
		if j.State != lifecycle.Failed {
			continue
		}
		switch j.RemoteStatus {
		case "completed":
			emptyOutputs++
			if j.Error != "generation produced no output" {
				t.Errorf("%s completed without output; error %q, want the fake's %q", id, j.Error, "generation produced no output")
			}
		case "failed":
			failedStatuses++
			if !strings.Contains(j.Error, "model crashed") || !strings.Contains(j.Error, "generation_failed") {
				t.Errorf("%s failed; error %q, want the fake's code generation_failed and message %q", id, j.Error, "model crashed")
			}
		default:
			t.Errorf("%s failed with remote status %q, error %q", id, j.RemoteStatus, j.Error)
		}
	}
	if emptyOutputs == 0 || failedStatuses == 0 || emptyOutputs+failedStatuses != sum.Counts[lifecycle.Failed] {
		t.Fatalf("%d empty outputs and %d failed statuses, want some of each adding up to %d failed", emptyOutputs, failedStatuses, sum.Counts[lifecycle.Failed])
	}
	// --retry-failed resubmits exactly the failed ones.
	before := e.srv.Stats().Submits
	e.srv.Update(func(c *runcomfytest.Config) { c.FailureRate, c.FailedStatusRate = 0, 0 })
	sum2, err := e.run(manifestOf(t, 30, "x"), func(c *Config) { c.RetryFailed = true })
	if err != nil {
		t.Fatal(err)
	}
	if got := int(e.srv.Stats().Submits - before); got != sum.Counts[lifecycle.Failed] {
		t.Fatalf("--retry-failed submitted %d, want %d", got, sum.Counts[lifecycle.Failed])
	}
	if sum2.Counts[lifecycle.Done] != 30 {
		t.Fatalf("after retry: %v", sum2.Counts)
	}
}

func TestChangedJobIsSubmittedAgainAndHistoryKept(t *testing.T) {
	e := newEnv(t, runcomfytest.Config{})
	if _, err := e.run(manifestOf(t, 3, "old prompt"), nil); err != nil {
		t.Fatal(err)
	}
	old := e.jobs()["job-001"].RequestID
	sum, err := e.run(manifestOf(t, 3, "new prompt"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Sync.Changed != 3 || sum.Submitted != 3 || sum.Counts[lifecycle.Done] != 3 {
		t.Fatalf("summary %+v", sum)
	}
	st, _ := store.Open(e.ledger, store.Options{ReadOnly: true})
	defer st.Close()
	subs, _ := st.Submissions(context.Background(), "job-001")
	if len(subs) != 2 || subs[0].RequestID != old || subs[1].RequestID == old {
		t.Fatalf("history %+v", subs)
	}
}

func TestMissingFileIsDownloadedAgainWithoutResubmitting(t *testing.T) {
	e := newEnv(t, runcomfytest.Config{})
	m := manifestOf(t, 2, "x")
	if _, err := e.run(m, nil); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(e.dir, "out", "job-000.mp4"))
	before := e.srv.Stats().Submits
	sum, err := e.run(m, nil)
	if err != nil || sum.Counts[lifecycle.Done] != 2 {
		t.Fatalf("%v %+v", err, sum)
	}
	if e.srv.Stats().Submits != before {
		t.Fatal("a missing file caused a resubmission")
	}
	if _, err := os.Stat(filepath.Join(e.dir, "out", "job-000.mp4")); err != nil {
		t.Fatal("file not downloaded again")
	}
}

func TestTruncatedAndExpiredDownloadsRecover(t *testing.T) {
	e := newEnv(t, runcomfytest.Config{TruncateRate: 0.4, ExpireRate: 0.4, Seed: 5})
	m := manifestOf(t, 20, "x")
	sum, err := e.run(m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Submitted != 20 || sum.Counts[lifecycle.Done]+sum.Counts[lifecycle.Completed] != 20 {
		t.Fatalf("summary %+v", sum)
	}
	// The faults are drawn at random per request, so now and then one job's
	// every download attempt is cut: it is left completed, and the next run
	// downloads it without submitting anything.
	for rerun := 0; sum.Counts[lifecycle.Done] != 20 && rerun < 3; rerun++ {
		if sum, err = e.run(m, nil); err != nil || sum.Submitted != 0 {
			t.Fatalf("rerun to finish the downloads: %+v, %v; want nothing submitted", sum, err)
		}
	}
	st := e.srv.Stats()
	if st.Truncated == 0 || st.Expired == 0 {
		t.Fatalf("the fake injected no faults: %+v", st)
	}
	if sum.Counts[lifecycle.Done] != 20 {
		t.Fatalf("summary %+v", sum)
	}
	// Recovering means downloading again, never submitting again.
	if st.Created != 20 || e.srv.Duplicates() != 0 {
		t.Fatalf("the fake created %d jobs (%d duplicates), want 20 and none", st.Created, e.srv.Duplicates())
	}
	jobs := e.jobs()
	if len(jobs) != 20 {
		t.Fatalf("%d jobs in the ledger, want 20", len(jobs))
	}
	ledger, err := store.Open(e.ledger, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ledger.Close()
	nfiles := 0
	for id, j := range jobs {
		if j.State != lifecycle.Done || j.RequestID == "" {
			t.Fatalf("%s: %+v", id, j)
		}
		fs, err := ledger.Files(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if len(fs) != 1 || fs[0].N != 0 || fs[0].Path != id+".mp4" {
			t.Fatalf("%s: files %+v, want one, %s.mp4", id, fs, id)
		}
		nfiles += len(fs)
		data, err := os.ReadFile(filepath.Join(e.dir, "out", fs[0].Path))
		if err != nil {
			t.Fatal(err)
		}
		// What the fake served, whole: a truncated body or an expired
		// link's error page saved as the file would differ.
		want := runcomfytest.OutputBytes(j.RequestID, 0)
		if !bytes.Equal(data, want) {
			t.Fatalf("%s: %d bytes on disk differ from the %d bytes the fake served", id, len(data), len(want))
		}
		sha := sha256.Sum256(want)
		if fs[0].Bytes != int64(len(want)) || fs[0].SHA256 != hex.EncodeToString(sha[:]) {
			t.Fatalf("%s: ledger records %d bytes sha256 %s, want %d and %x", id, fs[0].Bytes, fs[0].SHA256, len(want), sha)
		}
	}
	if nfiles != 20 {
		t.Fatalf("%d files in the ledger, want 20", nfiles)
	}
	entries, err := filepath.Glob(filepath.Join(e.dir, "out", "*.mp4"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 20 {
		t.Fatalf("%d .mp4 files in the output folder, want 20: %v", len(entries), entries)
	}
}

func TestMaxSubmissionsLeavesTheRestPending(t *testing.T) {
	e := newEnv(t, runcomfytest.Config{})
	sum, err := e.run(manifestOf(t, 10, "x"), func(c *Config) { c.MaxSubmissions = 4; c.Concurrency = 3 })
	if err != nil {
		t.Fatal(err)
	}
	if sum.Submitted != 4 || sum.Counts[lifecycle.Pending] != 6 || e.srv.Stats().Submits != 4 {
		t.Fatalf("summary %+v, fake submits %d", sum, e.srv.Stats().Submits)
	}
}

func TestAccountErrorStopsSubmissionsAndKeepsJobsPending(t *testing.T) {
	e := newEnv(t, runcomfytest.Config{BalanceJobs: 3})
	sum, err := e.run(manifestOf(t, 10, "x"), func(c *Config) { c.Concurrency = 1 })
	var ae *AccountError
	if !asAccount(err, &ae) {
		t.Fatalf("err = %v, want an AccountError", err)
	}
	if sum.Counts[lifecycle.Pending] != 7 || sum.Counts[lifecycle.Failed] != 0 {
		t.Fatalf("counts %v", sum.Counts)
	}
}

func asAccount(err error, target **AccountError) bool {
	for err != nil {
		if a, ok := err.(*AccountError); ok {
			*target = a
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

func TestSubmitOnlyThenCollect(t *testing.T) {
	e := newEnv(t, runcomfytest.Config{QueueTime: 30 * time.Millisecond})
	m := manifestOf(t, 5, "x")
	sum, err := e.run(m, func(c *Config) { c.SubmitOnly = true })
	if err != nil {
		t.Fatal(err)
	}
	if sum.Counts[lifecycle.Queued] != 5 {
		t.Fatalf("after --submit-only: %v", sum.Counts)
	}
	sum, err = e.run(m, nil)
	if err != nil || sum.Counts[lifecycle.Done] != 5 || e.srv.Stats().Submits != 5 {
		t.Fatalf("collect: %v %v submits %d", err, sum.Counts, e.srv.Stats().Submits)
	}
}

// --submit-only submits new jobs and leaves jobs already in flight alone,
// without waiting for them.
func TestSubmitOnlyDoesNotWaitForJobsInFlight(t *testing.T) {
	e := newEnv(t, runcomfytest.Config{QueueTime: time.Hour})
	if _, err := e.run(manifestOf(t, 3, "x"), func(c *Config) { c.SubmitOnly = true }); err != nil {
		t.Fatal(err)
	}
	// Everything that may fail the test is done here, on the test's own
	// goroutine; the goroutine only runs and reports.
	m := manifestOf(t, 5, "x")
	st, err := store.Open(e.ledger, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg := Config{Manifest: m, Store: st, API: e.client, HTTP: e.client.HTTPClient(), OutDir: filepath.Join(e.dir, "out"),
		Concurrency: 8, PollMax: 50 * time.Millisecond, ProgressEvery: -1, SubmitOnly: true}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type outcome struct {
		sum Summary
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		sum, err := Run(ctx, ctx, cfg)
		done <- outcome{sum, err}
	}()
	select {
	case o := <-done:
		if o.err != nil {
			t.Fatalf("--submit-only: %v", o.err)
		}
		if o.sum.Submitted != 2 || o.sum.Counts[lifecycle.Queued] != 5 {
			t.Fatalf("summary %+v", o.sum)
		}
	case <-time.After(20 * time.Second):
		cancel()
		<-done // let Run stop before the ledger is closed
		t.Fatal("--submit-only waited for jobs already in flight")
	}
	if got := e.srv.Stats().Created; got != 5 || e.srv.Duplicates() != 0 {
		t.Fatalf("the fake created %d jobs (%d duplicates), want 5 and none", got, e.srv.Duplicates())
	}
}

// An output URL on plain http to a public host is refused before any
// request: the rule of SPEC §6, shared with input URLs. https anywhere and
// http on loopback are fetched.
func TestOutputURLMustBeHTTPSOrLoopback(t *testing.T) {
	var requested []string
	body := []byte("\x00\x00\x00\x08ftypisom-video-bytes")
	serve := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		requested = append(requested, req.URL.String())
		return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"video/mp4"}},
			Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Request: req}, nil
	})
	r := &run{cfg: Config{OutDir: t.TempDir(), HTTP: &http.Client{Transport: serve}, StallTimeout: time.Minute}}

	for _, u := range []string{"http://cdn.example.com/a.mp4", "ftp://127.0.0.1/a.mp4", "data:video/mp4;base64,AAAA", "http://127.0.0.1.example.com/a.mp4"} {
		if _, err := r.fetchOnce(context.Background(), output{id: "j", request: "r", count: 1}, u); err == nil {
			t.Errorf("%s was accepted", u)
		}
	}
	if len(requested) != 0 {
		t.Fatalf("requests were made to refused URLs: %v", requested)
	}

	// The positive control: the same call, with allowed URLs, does fetch,
	// so the refusals above are the rule and not a broken fetch.
	for _, u := range []string{"https://cdn.example.com/a.mp4", "http://127.0.0.1:8080/a.mp4", "http://localhost/a.mp4", "http://[::1]:9/a.mp4"} {
		before := len(requested)
		f, err := r.fetchOnce(context.Background(), output{id: "j", request: "r", count: 1}, u)
		if err != nil {
			t.Errorf("%s was refused: %v", u, err)
			continue
		}
		if len(requested) != before+1 || requested[before] != u {
			t.Errorf("%s: requests %v", u, requested[before:])
		}
		data, err := os.ReadFile(filepath.Join(r.cfg.OutDir, f.Path))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, body) || f.Bytes != int64(len(body)) || f.URL != u {
			t.Errorf("%s: saved %q as %+v", u, data, f)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
