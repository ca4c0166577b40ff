package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

func manifestOf(t *testing.T, n int, prompt string) *manifest.Manifest {
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
	return Run(context.Background(), cfg)
}

func (e *env) jobs() map[string]store.Job {
	e.t.Helper()
	st, err := store.Open(e.ledger, store.Options{ReadOnly: true})
	if err != nil {
		e.t.Fatal(err)
	}
	defer st.Close()
	m := map[string]store.Job{}
	st.EachJob(func(j store.Job) error { m[j.ID] = j; return nil })
	return m
}

func TestRunCompletesAndVerifies(t *testing.T) {
	e := newEnv(t, runcomfytest.Config{QueueTime: 20 * time.Millisecond, RunTime: 30 * time.Millisecond, ExtraStatus: "warming_up", CostUSD: 0.5})
	sum, err := e.run(manifestOf(t, 10, "a fox"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Counts[store.Done] != 10 || sum.Submitted != 10 {
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
	if sum.Counts[store.Failed] == 0 || sum.Counts[store.Done] == 0 {
		t.Fatalf("want some failed and some done: %v", sum.Counts)
	}
	for id, j := range e.jobs() {
		if j.State == store.Failed && j.Error == "" {
			t.Errorf("%s failed without a message", id)
		}
	}
	// --retry-failed resubmits exactly the failed ones.
	before := e.srv.Stats().Submits
	e.srv.Update(func(c *runcomfytest.Config) { c.FailureRate, c.FailedStatusRate = 0, 0 })
	sum2, err := e.run(manifestOf(t, 30, "x"), func(c *Config) { c.RetryFailed = true })
	if err != nil {
		t.Fatal(err)
	}
	if got := int(e.srv.Stats().Submits - before); got != sum.Counts[store.Failed] {
		t.Fatalf("--retry-failed submitted %d, want %d", got, sum.Counts[store.Failed])
	}
	if sum2.Counts[store.Done] != 30 {
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
	if sum.Sync.Changed != 3 || sum.Submitted != 3 || sum.Counts[store.Done] != 3 {
		t.Fatalf("summary %+v", sum)
	}
	st, _ := store.Open(e.ledger, store.Options{ReadOnly: true})
	defer st.Close()
	subs, _ := st.Submissions("job-001")
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
	if err != nil || sum.Counts[store.Done] != 2 {
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
	sum, err := e.run(manifestOf(t, 20, "x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	st := e.srv.Stats()
	if st.Truncated == 0 || st.Expired == 0 {
		t.Fatalf("the fake injected no faults: %+v", st)
	}
	if sum.Counts[store.Done] != 20 {
		t.Fatalf("counts %v", sum.Counts)
	}
	for id, j := range e.jobs() {
		data, _ := os.ReadFile(filepath.Join(e.dir, "out", id+".mp4"))
		got := sha256.Sum256(data)
		if hex.EncodeToString(got[:]) != fileSHA(t, e, id) {
			t.Fatalf("%s: file does not match the ledger", id)
		}
		_ = j
	}
}

func fileSHA(t *testing.T, e *env, id string) string {
	st, err := store.Open(e.ledger, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fs, _ := st.Files(id)
	if len(fs) != 1 {
		t.Fatalf("%s: %d files", id, len(fs))
	}
	return fs[0].SHA256
}

func TestMaxSubmissionsLeavesTheRestPending(t *testing.T) {
	e := newEnv(t, runcomfytest.Config{})
	sum, err := e.run(manifestOf(t, 10, "x"), func(c *Config) { c.MaxSubmissions = 4; c.Concurrency = 3 })
	if err != nil {
		t.Fatal(err)
	}
	if sum.Submitted != 4 || sum.Counts[store.Pending] != 6 || e.srv.Stats().Submits != 4 {
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
	if sum.Counts[store.Pending] != 7 || sum.Counts[store.Failed] != 0 {
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
	if sum.Counts[store.Queued] != 5 {
		t.Fatalf("after --submit-only: %v", sum.Counts)
	}
	sum, err = e.run(m, nil)
	if err != nil || sum.Counts[store.Done] != 5 || e.srv.Stats().Submits != 5 {
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
	done := make(chan Summary, 1)
	go func() {
		sum, _ := e.run(manifestOf(t, 5, "x"), func(c *Config) { c.SubmitOnly = true })
		done <- sum
	}()
	select {
	case sum := <-done:
		if sum.Submitted != 2 || sum.Counts[store.Queued] != 5 {
			t.Fatalf("summary %+v", sum)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("--submit-only waited for jobs already in flight")
	}
}

// An output URL on plain http to a public host is refused before any
// request: the rule of SPEC §6, shared with input URLs.
func TestOutputURLMustBeHTTPSOrLoopback(t *testing.T) {
	r := &run{cfg: Config{OutDir: t.TempDir()}}
	r.cfg.HTTP = &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
		t.Fatal("a request was made to a refused URL")
		return nil, nil
	})}
	for _, u := range []string{"http://cdn.example.com/a.mp4", "ftp://127.0.0.1/a.mp4", "data:video/mp4;base64,AAAA"} {
		if _, err := r.fetchOnce(context.Background(), "j", 0, 1, u); err == nil {
			t.Errorf("%s was accepted", u)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
