package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"comfybatch/runcomfy/runcomfytest"
)

// 5. Edit a prompt, run, undo the edit, run: the original input's paid
// result is reused (nothing submitted, plan says so), and no output of
// either input is ever overwritten: each is kept with its request id.
func TestUndoingAnEditReusesThePaidResult(t *testing.T) {
	srv, env := serveFake(t, runcomfytest.Config{CostUSD: 0.25})
	dir := t.TempDir()
	manifest, _ := writeManifest(t, dir, 2)
	original, _ := os.ReadFile(manifest)
	edited := bytes.Replace(original, []byte("take 0"), []byte("take 0, at dusk"), 1)
	out := filepath.Join(dir, "out")

	run := func(what string) {
		t.Helper()
		if r := runBinary(t, env, "run", manifest, "--poll-max", "50ms"); r.code != 0 {
			t.Fatalf("%s: exit %d:\n%s", what, r.code, r.stderr)
		}
	}
	requestOf := func() string {
		t.Helper()
		for _, j := range status(t, manifest).Jobs {
			if j.ID == "clip-0000" {
				return j.RequestID
			}
		}
		t.Fatal("no clip-0000")
		return ""
	}
	run("first")
	first := requestOf()
	firstBytes, _ := os.ReadFile(filepath.Join(out, "clip-0000.mp4"))

	os.WriteFile(manifest, edited, 0o644)
	run("after the edit")
	second := requestOf()
	if second == first || srv.Stats().Created != 3 {
		t.Fatalf("the edit was not submitted: %s, %d created", second, srv.Stats().Created)
	}
	kept := filepath.Join(out, "_history", "clip-0000", first, "clip-0000.mp4")
	if b, err := os.ReadFile(kept); err != nil || !bytes.Equal(b, firstBytes) {
		t.Fatalf("the first result was not kept at %s: %v", kept, err)
	}

	os.WriteFile(manifest, original, 0o644)
	p := runBinary(t, env, "plan", manifest, "--json")
	var plan planJSON
	if err := json.Unmarshal([]byte(p.stdout), &plan); err != nil {
		t.Fatalf("plan: %v\n%s", err, p.stderr)
	}
	if plan.ToSubmit != 0 || plan.ToReuse != 1 || plan.Counts["returned"] != 1 {
		t.Fatalf("plan: submit %d, reuse %d, counts %v; want 0, 1", plan.ToSubmit, plan.ToReuse, plan.Counts)
	}
	run("after the undo")
	if srv.Stats().Created != 3 || srv.Duplicates() != 0 {
		t.Fatalf("the undo paid again: %d created, %d duplicates", srv.Stats().Created, srv.Duplicates())
	}
	if got := requestOf(); got != first {
		t.Fatalf("the job's request is %s, want the first one %s", got, first)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "clip-0000.mp4")); !bytes.Equal(b, firstBytes) {
		t.Fatal("the output is not the first result's")
	}
	secondKept := filepath.Join(out, "_history", "clip-0000", second, "clip-0000.mp4")
	if b, err := os.ReadFile(secondKept); err != nil || !bytes.Equal(b, runcomfytest.OutputBytes(second, 0)) {
		t.Fatalf("the edited input's result was not kept at %s: %v", secondKept, err)
	}
	meta, _ := os.ReadFile(filepath.Join(out, "metadata.jsonl"))
	if strings.Contains(string(meta), "_history") || !strings.Contains(string(meta), first) {
		t.Fatalf("metadata.jsonl lists kept files or misses the reused one:\n%s", meta)
	}
	checkOutputs(t, dir, status(t, manifest), []testJob{{ID: "clip-0000"}, {ID: "clip-0001"}})
}

// A ledger belongs to one manifest: another manifest on it is refused,
// with what to do, and nothing is sent or written.
func TestLedgerBelongsToOneManifest(t *testing.T) {
	srv, env := serveFake(t, runcomfytest.Config{})
	dir := t.TempDir()
	a, _ := writeManifest(t, filepath.Join(dir), 2)
	otherDir := filepath.Join(dir, "other")
	os.MkdirAll(otherDir, 0o755)
	b, _ := writeManifest(t, otherDir, 3)
	ledger := filepath.Join(dir, "shared.ledger.db")
	if r := runBinary(t, env, "run", a, "--ledger", ledger); r.code != 0 {
		t.Fatalf("exit %d:\n%s", r.code, r.stderr)
	}
	created := srv.Stats().Submits
	for _, cmd := range []string{"run", "plan", "cancel"} {
		r := runBinary(t, env, cmd, b, "--ledger", ledger)
		if r.code != 2 || !strings.Contains(r.stderr, "belongs to the manifest") || !strings.Contains(r.stderr, "--ledger") {
			t.Fatalf("%s with another manifest: exit %d:\n%s", cmd, r.code, r.stderr)
		}
	}
	if srv.Stats().Submits != created {
		t.Fatal("something was submitted")
	}
	if _, err := os.Stat(filepath.Join(otherDir, "out")); err == nil {
		t.Fatal("the other manifest's output folder was written")
	}
	// A manifest that moved is the same manifest.
	moved := filepath.Join(dir, "renamed.yaml")
	os.Rename(a, moved)
	if r := runBinary(t, env, "run", moved, "--ledger", ledger); r.code != 0 {
		t.Fatalf("after a move: exit %d:\n%s", r.code, r.stderr)
	}
}
