package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"comfybatch/runcomfy/runcomfytest"
	"comfybatch/store"
)

// 6. `run ... 2>&1 | head -1`: the reader goes away after one line, and
// the run still finishes every job instead of dying of SIGPIPE at its next
// log line.
func TestClosedOutputNeverKillsARun(t *testing.T) {
	_, env := serveFake(t, runcomfytest.Config{QueueTime: 300 * time.Millisecond, RunTime: 300 * time.Millisecond})
	manifest, jobs := writeManifest(t, t.TempDir(), 6)
	cmd := exec.Command(binPath, "run", manifest, "--progress-every", "50ms", "--poll-max", "50ms")
	cmd.Env = append(os.Environ(), env...)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil || line == "" {
		t.Fatalf("no first line: %v", err)
	}
	r.Close() // what head does after its line
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the run did not end")
	}
	if c := exitCodeOf(err); c != 0 {
		t.Fatalf("exit %d (a negative code is the signal that killed it), want 0", c)
	}
	checkOutputs(t, filepath.Dir(manifest), status(t, manifest), jobs)
}

// 8. What killed runs leave is cleaned up; metadata.jsonl gets the usual
// mode; an output path that is a file is a configuration error that
// touches nothing.
func TestLeftoversAndOutputFolder(t *testing.T) {
	srv, env := serveFake(t, runcomfytest.Config{})
	dir := t.TempDir()
	manifest, jobs := writeManifest(t, dir, 3)
	out := filepath.Join(dir, "out")

	// A file where the output folder should be: exit 2, nothing sent,
	// the file and the ledger's absence unchanged.
	os.WriteFile(out, []byte("my notes"), 0o644)
	r := runBinary(t, env, "run", manifest)
	if r.code != 2 || !strings.Contains(r.stderr, "is a file") || srv.Stats().Submits != 0 {
		t.Fatalf("exit %d, %d submits:\n%s", r.code, srv.Stats().Submits, r.stderr)
	}
	if b, _ := os.ReadFile(out); string(b) != "my notes" {
		t.Fatal("the file was changed")
	}
	os.Remove(out)

	// Leftovers of killed runs: partial files of requests no job is
	// collecting, their validators, half-written metadata.
	os.MkdirAll(out, 0o755)
	junk := []string{".clip-0000.0a1b2c3d4e5f.1.part", ".clip-0000.0a1b2c3d4e5f.1.part.validator", ".metadata-123-456.jsonl", ".clip-0009.1.part"}
	for _, j := range junk {
		os.WriteFile(filepath.Join(out, j), []byte("stale"), 0o600)
	}
	keep := filepath.Join(out, ".my-own-hidden-file")
	os.WriteFile(keep, []byte("mine"), 0o600)

	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	if r := runBinary(t, env, "run", manifest); r.code != 0 {
		t.Fatalf("exit %d:\n%s", r.code, r.stderr)
	}
	checkOutputs(t, dir, status(t, manifest), jobs)
	for _, j := range junk {
		if _, err := os.Stat(filepath.Join(out, j)); err == nil {
			t.Errorf("leftover %s is still there", j)
		}
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("a file comfybatch did not make was removed")
	}
	fi, err := os.Stat(filepath.Join(out, "metadata.jsonl"))
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("metadata.jsonl mode %v, want 0644: %v", fi.Mode().Perm(), err)
	}
}

// Two manifests with one output folder: the second ledger is refused the
// folder (exit 2), so it never overwrites the first one's paid outputs
// under the same names (found in review).
func TestOutputFolderBelongsToOneLedger(t *testing.T) {
	srv, env := serveFake(t, runcomfytest.Config{})
	dir := t.TempDir()
	a, _ := writeManifest(t, dir, 1)
	sub := filepath.Join(dir, "b")
	os.MkdirAll(sub, 0o755)
	b, _ := writeManifest(t, sub, 1)
	bb, _ := os.ReadFile(b)
	os.WriteFile(b, []byte(strings.Replace(strings.Replace(string(bb), "dir: out", "dir: ../out", 1), "take 0", "take 0 other", 1)), 0o644)
	if r := runBinary(t, env, "run", a, "--poll-max", "50ms"); r.code != 0 {
		t.Fatalf("a: exit %d\n%s", r.code, r.stderr)
	}
	r := runBinary(t, env, "run", b, "--poll-max", "50ms")
	if r.code != 2 || !strings.Contains(r.stderr, "holds the outputs of the ledger") || srv.Stats().Created != 1 {
		t.Fatalf("b: exit %d, created %d:\n%s", r.code, srv.Stats().Created, r.stderr)
	}
	sa := status(t, a)
	data, _ := os.ReadFile(filepath.Join(dir, "out", "clip-0000.mp4"))
	if string(data) != string(runcomfytest.OutputBytes(sa.Jobs[0].RequestID, 0)) {
		t.Fatal("a's output was overwritten")
	}
}

// The same manifest reached through a symlinked folder is the same owner
// of its ledger and output folder: the rerun is accepted and pays for
// nothing (claims compare files, not path strings).
func TestManifestThroughASymlinkIsTheSame(t *testing.T) {
	srv, env := serveFake(t, runcomfytest.Config{})
	target := filepath.Join(t.TempDir(), "target")
	os.MkdirAll(target, 0o755)
	m, _ := writeManifest(t, target, 2)
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(target, link); err != nil {
		t.Skip("no symlinks here:", err)
	}
	if r := runBinary(t, env, "run", m, "--poll-max", "50ms"); r.code != 0 {
		t.Fatalf("first run: exit %d\n%s", r.code, r.stderr)
	}
	r := runBinary(t, env, "run", filepath.Join(link, filepath.Base(m)), "--poll-max", "50ms")
	if r.code != 0 || srv.Stats().Created != 2 {
		t.Fatalf("through the link: exit %d, created %d (want 0 and 2):\n%s", r.code, srv.Stats().Created, r.stderr)
	}
}

// A no-op rerun notices an output changed in place (truncated): it is not
// "done" until it is whole again (found in review, when the short way
// trusted the folder's modification time).
func TestNoOpNoticesATruncatedOutput(t *testing.T) {
	_, env := serveFake(t, runcomfytest.Config{})
	dir := t.TempDir()
	manifest, jobs := writeManifest(t, dir, 2)
	for range 2 {
		if r := runBinary(t, env, "run", manifest, "--poll-max", "50ms"); r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, r.stderr)
		}
	}
	os.Truncate(filepath.Join(dir, "out", "clip-0000.mp4"), 10)
	r := runBinary(t, env, "run", manifest, "-v", "--poll-max", "50ms")
	if r.code != 0 || strings.Contains(r.stderr, "nothing changed since the last run") {
		t.Fatalf("exit %d:\n%s", r.code, r.stderr)
	}
	checkOutputs(t, dir, status(t, manifest), jobs)
}

// A ledger run on --fake is never taken for RunComfy's: a real run on it
// is refused, nothing sent (found in review: the fake's results were
// reported as done, paid outputs).
func TestFakeLedgerIsNotARealOne(t *testing.T) {
	srv, env := serveFake(t, runcomfytest.Config{})
	manifest, _ := writeManifest(t, t.TempDir(), 2)
	if r := runBinary(t, nil, "run", manifest, "--fake"); r.code != 0 {
		t.Fatalf("--fake: exit %d\n%s", r.code, r.stderr)
	}
	r := runBinary(t, env, "run", manifest)
	if r.code != 2 || !strings.Contains(r.stderr, "run against simulated") || srv.Stats().Submits != 0 {
		t.Fatalf("real run on a --fake ledger: exit %d, %d submits:\n%s", r.code, srv.Stats().Submits, r.stderr)
	}
}

// A ledger from before the API was recorded is judged by what it holds:
// request ids with RunComfy's outputs (or none yet) are not the simulated
// API's to answer (found in review: --fake failed them, then locked the
// real API out).
func TestUnrecordedAPIIsInferred(t *testing.T) {
	_, env := serveFake(t, runcomfytest.Config{QueueTime: time.Minute})
	manifest, _ := writeManifest(t, t.TempDir(), 2)
	if r := runBinary(t, env, "run", manifest, "--submit-only"); r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	st, err := store.Open(filepath.Join(filepath.Dir(manifest), "jobs.ledger.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.SetMeta(context.Background(), "api", "") // as a ledger made before it was recorded
	st.Close()
	r := runBinary(t, nil, "run", manifest, "--fake")
	if r.code != 2 || !strings.Contains(r.stderr, "other than the simulated one") {
		t.Fatalf("--fake on a ledger with request ids of another API: exit %d\n%s", r.code, r.stderr)
	}
	if s := status(t, manifest); s.Counts["queued"] != 2 {
		t.Fatalf("counts %v: the jobs were touched", s.Counts)
	}
}
