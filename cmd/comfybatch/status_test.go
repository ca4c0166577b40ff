package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"comfybatch/lifecycle"
	"comfybatch/runcomfy/runcomfytest"
	"comfybatch/store"
)

const statusDir = "../../testdata/status"

// ticking is a clock that moves one second each time it is read, from
// start: a fixture's ledger events get times of their own, the same in every
// run, for goldens.
func ticking(start time.Time) func() time.Time {
	var mu sync.Mutex
	clock := start
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		clock = clock.Add(time.Second)
		return clock
	}
}

// statusFixture writes a manifest (for results' output folder) and, with a
// clock that ticks one second a write, a ledger holding every state and the
// histories status -v must tell: a failure then a retry, an input changed
// while the job was at RunComfy, a cut-off submission, a cancel refused.
// It returns the manifest path.
func statusFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	manifest := filepath.Join(dir, "jobs.yaml")
	if err := os.WriteFile(manifest, []byte("model: m\noutput:\n  dir: clips\njobs:\n  - input: {prompt: x}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "jobs.ledger.db"), store.Options{Now: ticking(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	const model = "wan-ai/wan-2-6/flash/image-to-video"
	spec := func(id, prompt string) store.Spec {
		in, _ := json.Marshal(map[string]any{"prompt": prompt, "duration": 5, "img_url": "https://example.com/" + id + ".png"})
		return store.Spec{ID: id, Model: model, Input: in, Fingerprint: strings.Repeat(id[:1], 8) + "-" + prompt}
	}
	ids := []string{"done", "retried", "changed", "running", "unknown", "pending", "cancelled", "refused"}
	var specs []store.Spec
	for _, id := range ids {
		specs = append(specs, spec(id, "v1"))
	}
	_, err = st.Sync(context.Background(), specs)
	must(err)
	cost, zero := 0.25, 0.0
	n := 0
	submit := func(id string) {
		t.Helper()
		n++
		_, err := beginSubmit(st, id)
		must(err)
		must(submitted(st, id, "req-"+id+"-"+string(rune('0'+n%10))))
	}
	finish := func(id string) {
		t.Helper()
		url := "https://files.example.com/" + id + ".mp4"
		must(completed(st, id, "completed", []string{url}, &cost))
		must(st.FileSaved(context.Background(), id, store.File{N: 0, URL: url, Path: id + ".mp4", Bytes: 2048, SHA256: strings.Repeat("ab", 32)}))
		must(markDone(st, id))
	}
	pos := func(p int) *int { return &p }

	submit("done")
	must(observe(st, "done", lifecycle.Running, "in_progress", nil))
	finish("done")

	submit("retried")
	must(failed(st, "retried", "failed", "the model refused the image", &zero))
	submit("retried")
	finish("retried")

	submit("changed")
	_, err = st.Sync(context.Background(), []store.Spec{spec("changed", "v2")}) // edited while at RunComfy: collected first
	must(err)
	finish("changed")
	_, err = st.Sync(context.Background(), []store.Spec{spec("changed", "v2")}) // then submitted with the new input
	must(err)
	submit("changed")
	must(observe(st, "changed", lifecycle.Queued, "in_queue", pos(7)))

	submit("running")
	must(observe(st, "running", lifecycle.Running, "in_progress", nil))

	submit("cancelled")
	must(cancelled(st, "cancelled", "cancelled", "cancelled by `comfybatch cancel`"))

	submit("refused")
	must(observe(st, "refused", lifecycle.Running, "in_progress", nil))
	must(st.Apply(context.Background(), "refused", lifecycle.Cancel(lifecycle.Running, lifecycle.CancelAnswer{Status: "in_progress", Outcome: "not_cancellable"}).Step))

	_, err = beginSubmit(st, "unknown")
	must(err)
	_, err = st.Recover(context.Background())
	must(err)
	return manifest
}

// normalize makes output independent of where the test ran.
func normalize(s, manifest string) string {
	return strings.ReplaceAll(s, filepath.Dir(manifest), "TMP")
}

// TestStatusGolden pins status, status -v, status --job and results, as
// text and JSON, on a ledger holding every state and history.
func TestStatusGolden(t *testing.T) {
	t.Parallel()
	manifest := statusFixture(t)
	cases := []struct {
		golden string
		args   []string
	}{
		{"status.txt", []string{"status", manifest}},
		{"status.json", []string{"status", manifest, "--json"}},
		{"status-v.txt", []string{"status", manifest, "-v"}},
		{"status-v.json", []string{"status", manifest, "-v", "--json"}},
		{"status-job.txt", []string{"status", manifest, "--job", "changed", "--job", "refused"}},
		{"results.jsonl", []string{"results", manifest}},
		{"results.csv", []string{"results", manifest, "--format", "csv"}},
	}
	for _, c := range cases {
		t.Run(c.golden, func(t *testing.T) {
			r := runMain(t, nil, c.args...)
			if r.code != 0 || r.stderr != "" {
				t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
			}
			checkGolden(t, filepath.Join(statusDir, c.golden), normalize(r.stdout, manifest))
		})
	}
}

// TestStatusJSONSchema holds status --json to the field names SPEC §2
// promises: they may be added to, never renamed.
func TestStatusJSONSchema(t *testing.T) {
	t.Parallel()
	manifest := statusFixture(t)
	r := runMain(t, nil, "status", manifest, "-v", "--json")
	var out map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	for _, k := range []string{"ledger", "counts", "spent_usd", "jobs"} {
		if _, ok := out[k]; !ok {
			t.Errorf("status --json has no %q", k)
		}
	}
	counts := out["counts"].(map[string]any)
	for _, st := range lifecycle.States {
		if _, ok := counts[string(st)]; !ok {
			t.Errorf("counts has no %q", st)
		}
	}
	jobs := out["jobs"].([]any)
	if len(jobs) != 8 {
		t.Fatalf("%d jobs, want 8", len(jobs))
	}
	for _, j := range jobs {
		job := j.(map[string]any)
		for _, k := range []string{"id", "model", "state", "remote_status", "request_id", "attempts", "cost_usd", "error", "files", "events"} {
			if _, ok := job[k]; !ok {
				t.Errorf("job %v has no %q", job["id"], k)
			}
		}
		for _, f := range job["files"].([]any) {
			for _, k := range []string{"path", "bytes", "sha256"} {
				if _, ok := f.(map[string]any)[k]; !ok {
					t.Errorf("job %v: a file has no %q", job["id"], k)
				}
			}
		}
	}
}

// TestStatusHistorySpansResubmissions: the retried job shows both request
// ids, and the changed job the request left at RunComfy by the edit.
func TestStatusHistorySpansResubmissions(t *testing.T) {
	t.Parallel()
	manifest := statusFixture(t)
	r := runMain(t, nil, "status", manifest, "--job", "retried", "--job", "changed")
	for _, want := range []string{"req-retried-2", "req-retried-3", "the model refused the image", "req-changed-4", "req-changed-5", "queue position 7"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status --job lacks %q:\n%s", want, r.stdout)
		}
	}
	// The request made before the edit was collected and its cost kept.
	for _, line := range strings.Split(r.stdout, "\n") {
		if strings.Contains(line, "req-changed-4") && !strings.Contains(line, "submitting") &&
			(!strings.Contains(line, "completed") || !strings.Contains(line, "$0.25")) {
			t.Errorf("the request before the edit should show completed at $0.25: %q", line)
		}
	}
}

func TestStatusErrors(t *testing.T) {
	t.Parallel()
	manifest := statusFixture(t)
	if r := runMain(t, nil, "status", manifest, "--job", "nope"); r.code != 2 || !strings.Contains(r.stderr, "status "+manifest+" -v") {
		t.Errorf("unknown --job: exit %d, want 2 pointing at status -v:\n%s", r.code, r.stderr)
	}
	if r := runMain(t, nil, "results", manifest, "--format", "xml"); r.code != 2 || !strings.Contains(r.stderr, "jsonl or csv") {
		t.Errorf("--format xml: exit %d, want 2:\n%s", r.code, r.stderr)
	}
	// A file that is not a ledger is a configuration error, for every reader.
	foreign := filepath.Join(t.TempDir(), "notes.db")
	if err := os.WriteFile(foreign, []byte("SQLite format 3\x00 but someone else's"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"status", "results", "plan"} {
		if r := runMain(t, nil, cmd, manifest, "--ledger", foreign); r.code != 2 {
			t.Errorf("%s --ledger <foreign file>: exit %d, want 2:\n%s", cmd, r.code, r.stderr)
		} else if !strings.Contains(r.stderr, "not a comfybatch ledger") {
			t.Errorf("%s --ledger <foreign file>: %s", cmd, r.stderr)
		}
	}
	// No ledger yet: status and results still answer, exit 0, and say so.
	none := filepath.Join(t.TempDir(), "new.yaml")
	for _, args := range [][]string{{"status", none}, {"status", none, "--json"}, {"results", none}} {
		r := runMain(t, nil, args...)
		if r.code != 0 || !strings.Contains(r.stderr, "no ledger") {
			t.Errorf("%v without a ledger: exit %d:\n%s", args, r.code, r.stderr)
		}
	}
}

// TestStatusBesideRun asks status from "another terminal" while a run holds
// the ledger, and sees the jobs move.
func TestStatusBesideRun(t *testing.T) {
	t.Parallel()
	srv := runcomfytest.New(runcomfytest.Config{QueueTime: 2 * time.Second, RunTime: 200 * time.Millisecond, Token: testToken, CostUSD: 0.1})
	api := srv.Start()
	defer srv.Close()
	dir := t.TempDir()
	manifest, _ := writeManifest(t, dir, 6)
	cmd, _, stderr := startBinary(t, tokenEnv(api), "run", manifest, "--rps", "1000")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	var s statusJSON
	deadline := time.Now().Add(20 * time.Second)
	for s.InFlight < 6 && time.Now().Before(deadline) {
		r := runMain(t, nil, "status", manifest, "--json")
		if r.code != 0 {
			t.Fatalf("status beside a run: exit %d:\n%s", r.code, r.stderr)
		}
		if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s.InFlight != 6 {
		t.Fatalf("status never saw the 6 jobs in flight: %+v", s)
	}
	if err := <-done; exitCodeOf(err) != 0 {
		t.Fatalf("run exited %d:\n%s", exitCodeOf(err), stderr)
	}
	r := runMain(t, nil, "status", manifest, "--json")
	json.Unmarshal([]byte(r.stdout), &s)
	if s.Counts["done"] != 6 || s.SpentUSD < 0.59 || s.SpentUSD > 0.61 || s.AverageCostUSD == nil {
		t.Fatalf("after the run: %+v", s)
	}
}
