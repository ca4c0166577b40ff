package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"comfybatch/runcomfy/runcomfytest"
	"comfybatch/store"
)

// Must-show 2: run --redo-rejected submits exactly the rejected jobs, once
// each, and keeps their rejected outputs; results --review accepted and
// metadata.jsonl agree with the reviews.
func TestRedoRejected(t *testing.T) {
	srv, env := serveFake(t, runcomfytest.Config{CostUSD: 0.25})
	dir := t.TempDir()
	manifest, jobs := writeManifest(t, dir, 4)
	out := filepath.Join(dir, "out")
	run := func(args ...string) {
		t.Helper()
		if r := runBinary(t, env, append([]string{"run", manifest, "--poll-max", "50ms"}, args...)...); r.code != 0 {
			t.Fatalf("run %v: exit %d:\n%s", args, r.code, r.stderr)
		}
	}
	run()
	before := map[string]string{}
	for _, j := range status(t, manifest).Jobs {
		before[j.ID] = j.RequestID
	}
	rejectedBytes, _ := os.ReadFile(filepath.Join(out, "clip-0002.mp4"))

	for _, args := range [][]string{
		{"review", manifest, "--accept", "clip-0000", "clip-0001"},
		{"review", manifest, "--reject", "clip-0002", "--note", "the boat sinks"},
	} {
		if r := runBinary(t, nil, args...); r.code != 0 {
			t.Fatalf("%v: exit %d: %s", args, r.code, r.stderr)
		}
	}
	// A typo records nothing, and says what was meant.
	if r := runBinary(t, nil, "review", manifest, "--reject", "clip-0003", "clip-003"); r.code != 2 || !strings.Contains(r.stderr, "did you mean clip-0003") {
		t.Fatalf("review of an unknown id: exit %d: %s", r.code, r.stderr)
	}

	p := runBinary(t, env, "plan", manifest, "--redo-rejected", "--json")
	var plan planJSON
	if err := json.Unmarshal([]byte(p.stdout), &plan); err != nil {
		t.Fatalf("plan: %v\n%s", err, p.stderr)
	}
	if plan.ToSubmit != 1 || plan.ToRedo != 1 || plan.Cost.PricedJobs != 1 {
		t.Fatalf("plan --redo-rejected: to_submit %d, to_redo %d, priced %d; want 1, 1, 1", plan.ToSubmit, plan.ToRedo, plan.Cost.PricedJobs)
	}

	run("--redo-rejected")
	run("--redo-rejected") // the new output is not reviewed: nothing more
	counts := submissionsPerJob(t, srv, jobs)
	for _, j := range jobs {
		want := 1
		if j.ID == "clip-0002" {
			want = 2
		}
		if counts[j.ID] != want {
			t.Errorf("%s submitted %d times, want %d", j.ID, counts[j.ID], want)
		}
	}
	after := map[string]string{}
	for _, j := range status(t, manifest).Jobs {
		after[j.ID] = j.RequestID
	}
	if after["clip-0002"] == before["clip-0002"] || after["clip-0000"] != before["clip-0000"] {
		t.Fatalf("request ids before %v, after %v", before, after)
	}
	kept := filepath.Join(out, "_history", "clip-0002", before["clip-0002"], "clip-0002.mp4")
	if b, err := os.ReadFile(kept); err != nil || !bytes.Equal(b, rejectedBytes) {
		t.Fatalf("the rejected output was not kept at %s: %v", kept, err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "clip-0002.mp4")); !bytes.Equal(b, runcomfytest.OutputBytes(after["clip-0002"], 0)) {
		t.Fatal("clip-0002.mp4 is not the new request's output")
	}

	r := runBinary(t, nil, "results", manifest, "--review", "accepted")
	var accepted []string
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var rec struct {
			ID     string  `json:"id"`
			Review *string `json:"review"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Review == nil || *rec.Review != "accepted" {
			t.Fatalf("results --review accepted: %q: %v", line, err)
		}
		accepted = append(accepted, rec.ID)
	}
	if !slices.Equal(accepted, []string{"clip-0000", "clip-0001"}) {
		t.Fatalf("results --review accepted gave %v", accepted)
	}

	// metadata.jsonl: the accepted ones say so; the redone job's new
	// output and the unreviewed job have no review.
	f, err := os.Open(filepath.Join(out, "metadata.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var row struct {
			ID     string  `json:"id"`
			Review *string `json:"review"`
		}
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatal(err)
		}
		got[row.ID] = "null"
		if row.Review != nil {
			got[row.ID] = *row.Review
		}
	}
	want := map[string]string{"clip-0000": "accepted", "clip-0001": "accepted", "clip-0002": "null", "clip-0003": "null"}
	for id, v := range want {
		if got[id] != v {
			t.Errorf("metadata.jsonl: %s review %s, want %s", id, got[id], v)
		}
	}
}

// Must-show 3: reviews written while a run holds the ledger, from the page
// and from `review`, survive a kill -9 of that run, and the next run
// copies them into the ledger itself.
func TestReviewsSurviveKilledRun(t *testing.T) {
	_, env := serveFake(t, runcomfytest.Config{RunTime: 3 * time.Second})
	dir := t.TempDir()
	manifest, _ := writeManifest(t, dir, 3)
	ledger := filepath.Join(dir, "jobs.ledger.db")
	if r := runBinary(t, env, "run", manifest, "--poll-max", "50ms", "--max-submissions", "2"); r.code != 1 {
		t.Fatalf("first run: exit %d:\n%s", r.code, r.stderr)
	}
	var done []string
	for _, j := range status(t, manifest).Jobs {
		if j.State == "done" {
			done = append(done, j.ID)
		}
	}
	if len(done) != 2 {
		t.Fatalf("done after the first run: %v", done)
	}
	base := startView(t, nil, manifest, "--addr", "127.0.0.1:0")

	cmd, _, stderr := startBinary(t, env, "run", manifest, "--poll-max", "50ms")
	for deadline := time.Now().Add(time.Minute); ; {
		if s := status(t, manifest); s.Counts["queued"]+s.Counts["running"] == 1 {
			break // the run holds the ledger, its job at RunComfy
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the run never submitted its job:\n%s", stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := runBinary(t, nil, "review", manifest, "--accept", done[0], "--note", "keeper"); r.code != 0 {
		t.Fatalf("review during the run: exit %d: %s", r.code, r.stderr)
	}
	resp, err := http.Post(base+"api/review", "application/json", strings.NewReader(`{"ids":["`+done[1]+`"],"verdict":"rejected","note":"from the page"}`))
	if err != nil || resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("review from the page during the run: %v %s %v", resp.StatusCode, b, err)
	}
	resp.Body.Close()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if r := runBinary(t, env, "run", manifest, "--poll-max", "50ms"); r.code != 0 {
		t.Fatalf("run after the kill: exit %d:\n%s", r.code, r.stderr)
	}
	want := map[string]store.Verdict{done[0]: store.Accepted, done[1]: store.Rejected}
	check := func(where string, got map[string]store.Review, err error) {
		t.Helper()
		if err != nil || len(got) != 2 {
			t.Fatalf("%s: %v, %v", where, got, err)
		}
		for id, v := range want {
			if got[id].Verdict != v {
				t.Errorf("%s: %s is %q, want %s", where, id, got[id].Verdict, v)
			}
		}
	}
	got, err := store.ReadReviews(context.Background(), ledger, nil)
	check("journal", got, err)
	// The ledger alone carries them too: the run copied them in.
	os.Rename(store.ReviewsPath(ledger), filepath.Join(dir, "journal-away"))
	st, err := store.Open(ledger, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got, err = store.ReadReviews(context.Background(), ledger, st)
	check("ledger", got, err)
}
