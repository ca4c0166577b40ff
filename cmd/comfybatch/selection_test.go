package main

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"comfybatch/runcomfy/runcomfytest"
)

// runSummary reads what `run --json` prints when it ends.
func runSummary(t *testing.T, r result) runJSON {
	t.Helper()
	var out runJSON
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("run --json: %v\nstdout:\n%s\nstderr:\n%s", err, r.stdout, r.stderr)
	}
	return out
}

// statesOf maps each job id in the ledger to its state.
func statesOf(t *testing.T, manifest string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, j := range status(t, manifest).Jobs {
		m[j.ID] = j.State
	}
	return m
}

// TestRunSelection drives a six-job manifest through the binary one
// selection at a time: run --job submits, polls and downloads the jobs
// selected and no other — jobs outside it are not submitted, and jobs
// outside it already at RunComfy are not even polled; --retry-failed with
// --job retries just those; an id that is not in the manifest is a usage
// error with a suggestion, before any API call. Each closing summary says
// what the run spent and what the ledger spent in all.
func TestRunSelection(t *testing.T) {
	t.Parallel()
	// Jobs finish at RunComfy the moment they are created: a job left
	// queued in the ledger was not polled.
	srv, env := serveFake(t, runcomfytest.Config{CostUSD: 0.1})
	manifest, jobs := writeManifest(t, t.TempDir(), 6)
	submits := func() string {
		t.Helper()
		var parts []string
		for _, j := range jobs {
			parts = append(parts, j.ID[len(j.ID)-1:]+"="+string(rune('0'+submissionsPerJob(t, srv, jobs)[j.ID])))
		}
		return strings.Join(parts, " ")
	}

	// A typo: exit 2, nothing sent, and what was meant.
	r := runBinary(t, env, "run", manifest, "--job", "clip-001,clip-0003")
	if r.code != 2 || !strings.Contains(r.stderr, "job clip-001 is not in the manifest (did you mean clip-0001?)") {
		t.Fatalf("run --job <typo>: exit %d:\n%s", r.code, r.stderr)
	}
	if st := srv.Stats(); st.Submits != 0 {
		t.Fatalf("a refused selection reached the API: %+v", st)
	}

	// Every job enters the ledger; one is submitted, the rest wait.
	if r = runBinary(t, env, "run", manifest, "--submit-only", "--max-submissions", "1", "-j", "1"); r.code == 2 {
		t.Fatalf("run --max-submissions 1: exit %d:\n%s", r.code, r.stderr)
	}
	if got := submits(); got != "0=1 1=0 2=0 3=0 4=0 5=0" {
		t.Fatalf("submissions per job: %s", got)
	}

	// Two jobs, by a comma list: only they are submitted and collected;
	// clip-0000, finished at RunComfy, is not even polled.
	r = runBinary(t, env, "run", manifest, "--job", "clip-0001,clip-0003", "--json")
	if r.code != 0 {
		t.Fatalf("run --job: exit %d:\n%s", r.code, r.stderr)
	}
	if got := submits(); got != "0=1 1=1 2=0 3=1 4=0 5=0" {
		t.Fatalf("submissions per job: %s", got)
	}
	out := runSummary(t, r)
	if out.Counts["done"] != 2 || out.Counts["pending"] != 0 || out.Selected != 2 || out.Submitted != 2 || out.Outcome != "done" ||
		out.OutsideSelection != 1 || out.SpentThisRunUSD != 0.2 || out.SpentUSD != 0.2 {
		t.Fatalf("run --job --json: %+v", out)
	}
	if !strings.Contains(r.stderr, "spent $0.20 this run, $0.20 on this ledger in all, as RunComfy reported it; still estimated ≈ $0.25: ≈ $0.25 for 1 submission without a reported cost") {
		t.Errorf("the closing summary does not say what was spent and what is estimated:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, "1 job outside --job are at RunComfy") {
		t.Errorf("the job left outside is not mentioned:\n%s", r.stderr)
	}

	// A glob, submit only: 4 and 5 are left at RunComfy.
	if r = runBinary(t, env, "run", manifest, "--job", "clip-000[45]", "--submit-only"); r.code != 0 {
		t.Fatalf("run --job <glob> --submit-only: exit %d:\n%s", r.code, r.stderr)
	}
	if got := submits(); got != "0=1 1=1 2=0 3=1 4=1 5=1" {
		t.Fatalf("the glob clip-000[45] did not submit both, or only them: %s", got)
	}

	// The others fail at RunComfy; --retry-failed --job retries just one,
	// and leaves the three at RunComfy alone.
	srv.Update(func(c *runcomfytest.Config) { c.FailedStatusRate = 1 })
	if r = runBinary(t, env, "run", manifest, "--job", "clip-0002"); r.code != 1 {
		t.Fatalf("run with a failure: exit %d:\n%s", r.code, r.stderr)
	}
	srv.Update(func(c *runcomfytest.Config) { c.FailedStatusRate = 0 })
	r = runBinary(t, env, "run", manifest, "--retry-failed", "--job", "clip-0002", "--json")
	if r.code != 0 {
		t.Fatalf("run --retry-failed --job clip-0002: exit %d:\n%s", r.code, r.stderr)
	}
	if out = runSummary(t, r); out.OutsideSelection != 3 || out.Counts["done"] != 1 || out.SpentThisRunUSD != 0.1 || out.SpentUSD != 0.4 { // the failure was billed too
		t.Fatalf("run --retry-failed --job clip-0002 --json: %+v", out)
	}
	states := statesOf(t, manifest)
	for id, want := range map[string]string{"clip-0000": "queued", "clip-0002": "done", "clip-0004": "queued", "clip-0005": "queued"} {
		if states[id] != want {
			t.Errorf("%s is %s, want %s (states %v)", id, states[id], want, states)
		}
	}
	if got := submits(); got != "0=1 1=1 2=2 3=1 4=1 5=1" {
		t.Fatalf("submissions per job after --retry-failed --job clip-0002: %s", got)
	}

	// A plain run collects the rest. Then an edit outside a selection is
	// left to a plain run, which must still see it (no "nothing to do"
	// shortcut recorded by the selection).
	if r = runBinary(t, env, "run", manifest); r.code != 0 {
		t.Fatalf("plain run: exit %d:\n%s", r.code, r.stderr)
	}
	b, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(manifest, []byte(strings.Replace(string(b), "take 1\"", "take 1, again\"", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if r = runBinary(t, env, "run", manifest, "--job", "clip-0002"); r.code != 0 || srv.Stats().Submits != 7 {
		t.Fatalf("run --job clip-0002 after an edit of clip-0001: exit %d, %d submissions:\n%s", r.code, srv.Stats().Submits, r.stderr)
	}
	if st := statesOf(t, manifest)["clip-0001"]; st != "done" {
		t.Fatalf("the edit of clip-0001, outside the selection, was taken in: it is %s", st)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(manifest), "out", "clip-0001.mp4")); err != nil {
		t.Fatalf("the file of clip-0001, outside the selection, was moved: %v", err)
	}
	if r = runBinary(t, env, "run", manifest); r.code != 0 || srv.Stats().Submits != 8 {
		t.Fatalf("the plain run after it did not submit the edited job: exit %d, %d submissions:\n%s", r.code, srv.Stats().Submits, r.stderr)
	}

	// Nothing left to do: the quick answer from the ledger closes with the
	// same money, in text and JSON.
	r = runBinary(t, env, "run", manifest, "--json")
	if out = runSummary(t, r); r.code != 0 || out.SpentThisRunUSD != 0 || out.SpentUSD != 0.8 || out.Submitted != 0 || out.Counts["done"] != 6 {
		t.Fatalf("a rerun with nothing to do: exit %d, %+v", r.code, out)
	}
	if !strings.Contains(r.stderr, "spent $0.00 this run, $0.80 on this ledger in all, as RunComfy reported it; nothing is still estimated") {
		t.Errorf("a rerun with nothing to do does not say what was spent:\n%s", r.stderr)
	}
}

// TestCancelResultsSelection: cancel --job sends a cancel for the jobs
// selected (comma lists and globs) and no other; results --job exports
// only those; a mistyped id is a usage error with a suggestion, and
// nothing is sent.
func TestCancelResultsSelection(t *testing.T) {
	t.Parallel()
	srv, env := serveFake(t, runcomfytest.Config{QueueTime: time.Hour})
	manifest, _ := writeManifest(t, t.TempDir(), 5)
	if r := runBinary(t, env, "run", manifest, "--submit-only"); r.code != 0 {
		t.Fatalf("submit: exit %d:\n%s", r.code, r.stderr)
	}

	r := runBinary(t, env, "cancel", manifest, "--job", "clip-0o02")
	if r.code != 2 || !strings.Contains(r.stderr, "job clip-0o02 is not in the ledger (did you mean clip-0002?)") || srv.Stats().Cancel != 0 {
		t.Fatalf("cancel --job <typo>: exit %d, %d cancels sent:\n%s", r.code, srv.Stats().Cancel, r.stderr)
	}
	r = runBinary(t, env, "cancel", manifest, "--job", "clip-000[13],clip-0004", "--json")
	var out cancelJSON
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || r.code != 0 {
		t.Fatalf("cancel --job: exit %d, %v:\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if out.Counts["cancelled"] != 3 || len(out.Jobs) != 3 || srv.Stats().Cancel != 3 {
		t.Fatalf("cancel --job answered %+v after %d cancels", out, srv.Stats().Cancel)
	}
	want := map[string]string{"clip-0000": "queued", "clip-0001": "cancelled", "clip-0002": "queued", "clip-0003": "cancelled", "clip-0004": "cancelled"}
	if got := statesOf(t, manifest); !maps.Equal(got, want) {
		t.Fatalf("after cancel --job: %v, want %v", got, want)
	}

	r = runBinary(t, nil, "results", manifest, "--job", "clip-0001", "--job", "clip-0002")
	if r.code != 0 || strings.Count(r.stdout, "\n") != 1 || !strings.HasPrefix(r.stdout, `{"id":"clip-0001"`) {
		t.Fatalf("results --job: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "1 job of --job not settled yet") {
		t.Errorf("results --job does not say a selected job was left out:\n%s", r.stderr)
	}
	if r = runBinary(t, nil, "results", manifest, "--job", "clpi-0001"); r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, "(did you mean clip-0001?)") {
		t.Fatalf("results --job <typo>: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
}
