package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"comfybatch/runcomfy"
	"comfybatch/runcomfy/runcomfytest"
)

// fakeStatus is `status -v --json` with what the --fake tests read.
type fakeStatus struct {
	Counts map[string]int `json:"counts"`
	Jobs   []struct {
		ID        string          `json:"id"`
		Model     string          `json:"model"`
		State     string          `json:"state"`
		RequestID string          `json:"request_id"`
		Attempts  int             `json:"attempts"`
		Input     json.RawMessage `json:"input"`
		Files     []struct {
			Path   string `json:"path"`
			SHA256 string `json:"sha256"`
		} `json:"files"`
	} `json:"jobs"`
}

func fakeStatusOf(t *testing.T, manifest string) fakeStatus {
	t.Helper()
	r := runBinary(t, nil, "status", manifest, "-v", "--json")
	var s fakeStatus
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("status exited %d: %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	return s
}

func inFlight(s fakeStatus) int {
	return s.Counts["queued"] + s.Counts["running"] + s.Counts["completed"]
}

// stopFakeRun runs examples/dataset.yaml (copied into a temp dir) with
// --fake until some jobs are done and others in flight, then sends sig. It
// returns the manifest's path and the exit code.
func stopFakeRun(t *testing.T, sig syscall.Signal) (string, int) {
	t.Helper()
	dir := t.TempDir()
	data, err := os.ReadFile("../../examples/dataset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	manifest := filepath.Join(dir, "dataset.yaml")
	if err := os.WriteFile(manifest, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd, _, stderr := startBinary(t, nil, "run", manifest, "--fake", "-j", "32", "--rps", "100", "-q")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case err := <-done:
			t.Fatalf("the run ended (exit %d) before it could be stopped with some jobs done and others in flight:\n%s", exitCodeOf(err), stderr)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no moment with jobs both done and in flight in 2 minutes:\n%s", stderr)
		}
		if r := runBinary(t, nil, "status", manifest, "--json"); r.code == 0 {
			var s fakeStatus
			if json.Unmarshal([]byte(r.stdout), &s) == nil && s.Counts["done"] > 0 && inFlight(s) > 0 {
				break
			}
		}
	}
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	return manifest, exitCodeOf(<-done)
}

// checkFakeOutputs: every job is done, under a request id of its own that
// the simulated API made for that job's own input, with the file whose
// bytes that request produced.
func checkFakeOutputs(t *testing.T, manifest string, s fakeStatus) {
	t.Helper()
	if s.Counts["done"] != 120 || len(s.Jobs) != 120 {
		t.Fatalf("counts %v, want 120 jobs done", s.Counts)
	}
	holder := map[string]string{}
	for _, j := range s.Jobs {
		if other, ok := holder[j.RequestID]; ok {
			t.Errorf("jobs %s and %s hold the same request id %s", other, j.ID, j.RequestID)
		}
		holder[j.RequestID] = j.ID
		if ok, err := runcomfytest.MatchesInput(j.RequestID, j.Model, j.Input); !ok || err != nil {
			t.Errorf("job %s holds request %s, which was not made for its input (%v)", j.ID, j.RequestID, err)
		}
		if len(j.Files) != 1 {
			t.Errorf("job %s: %d files, want 1", j.ID, len(j.Files))
			continue
		}
		want := runcomfytest.OutputBytes(j.RequestID, 0)
		got, err := os.ReadFile(filepath.Join(filepath.Dir(manifest), "dataset-out", j.Files[0].Path))
		sum := sha256.Sum256(want)
		if err != nil || !bytes.Equal(got, want) || j.Files[0].SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("job %s: %s is not the %d bytes its request %s produced (%d bytes, %v)", j.ID, j.Files[0].Path, len(want), j.RequestID, len(got), err)
		}
	}
}

// TestFakeInterruptResume: `run examples/dataset.yaml --fake`, Ctrl-C,
// run again. The second process collects the requests the first made, as
// RunComfy would answer them, and every job ends with its own video.
func TestFakeInterruptResume(t *testing.T) {
	t.Parallel()
	manifest, code := stopFakeRun(t, syscall.SIGINT)
	if code != exitInterrupted {
		t.Fatalf("exit %d after SIGINT, want %d", code, exitInterrupted)
	}
	before := fakeStatusOf(t, manifest)
	if inFlight(before) == 0 || before.Counts["unknown"] != 0 {
		t.Fatalf("after the interrupt: %v; want jobs in flight and none unknown", before.Counts)
	}
	if r := runBinary(t, nil, "run", manifest, "--fake", "-j", "32", "--rps", "100", "-q"); r.code != 0 {
		t.Fatalf("rerun exited %d:\n%s", r.code, r.stderr)
	}
	after := fakeStatusOf(t, manifest)
	checkFakeOutputs(t, manifest, after)
	for _, j := range after.Jobs {
		if j.Attempts != 1 {
			t.Errorf("job %s was submitted %d times: the jobs in flight at the interrupt were to be collected", j.ID, j.Attempts)
		}
	}
	t.Logf("%d jobs were in flight at the interrupt", inFlight(before))
}

// TestFakeKillResume: the same with kill -9. A job cut off between its
// POST and its saved request id is unknown, and --resubmit-unknown
// finishes it; every other job is collected, never submitted again.
func TestFakeKillResume(t *testing.T) {
	t.Parallel()
	manifest, code := stopFakeRun(t, syscall.SIGKILL)
	if code != -int(syscall.SIGKILL) {
		t.Fatalf("exit %d after SIGKILL", code)
	}
	if before := fakeStatusOf(t, manifest); inFlight(before) == 0 {
		t.Fatalf("after the kill: %v; want jobs in flight", before.Counts)
	}
	r := runBinary(t, nil, "run", manifest, "--fake", "-j", "32", "--rps", "100", "-q")
	mid := fakeStatusOf(t, manifest)
	unknown := map[string]bool{}
	for _, j := range mid.Jobs {
		if j.State == "unknown" {
			unknown[j.ID] = true
		}
	}
	if want := map[bool]int{false: 0, true: 1}[len(unknown) > 0]; r.code != want {
		t.Fatalf("rerun with %d unknown jobs exited %d, want %d:\n%s", len(unknown), r.code, want, r.stderr)
	}
	if len(unknown) > 0 {
		if r := runBinary(t, nil, "run", manifest, "--fake", "--resubmit-unknown", "-q"); r.code != 0 {
			t.Fatalf("run --resubmit-unknown exited %d:\n%s", r.code, r.stderr)
		}
	}
	after := fakeStatusOf(t, manifest)
	checkFakeOutputs(t, manifest, after)
	for _, j := range after.Jobs {
		if j.Attempts != 1 && !(unknown[j.ID] && j.Attempts == 2) {
			t.Errorf("job %s was submitted %d times (unknown after the kill: %v)", j.ID, j.Attempts, unknown[j.ID])
		}
	}
	t.Logf("%d jobs were cut off mid-submission", len(unknown))
}

// TestFakeQueuePosition: the simulated API behind --fake reports a queued
// request's position on the result endpoint, which runs poll, so that
// `status` shows the deepest one, as with RunComfy.
func TestFakeQueuePosition(t *testing.T) {
	t.Parallel()
	cfg := fakeConfig()
	cfg.RunTime = time.Hour // the account's places stay taken: the rest wait
	srv := runcomfytest.New(cfg)
	api := srv.Start()
	defer srv.Close()
	c, err := runcomfy.New(runcomfy.Options{BaseURL: api, Token: cfg.Token})
	if err != nil {
		t.Fatal(err)
	}
	var last runcomfy.SubmitResponse
	for i := range cfg.MaxRunning + 3 {
		if last, err = c.Submit(context.Background(), testModel, map[string]any{"i": i}, runcomfy.SubmitOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := c.Result(context.Background(), string(last.RequestID))
	if err != nil || res.Status != runcomfy.StatusInQueue || res.QueuePosition == nil || *res.QueuePosition < 1 {
		t.Fatalf("result of a queued request: %+v, %v; want in_queue with its position", res, err)
	}

	// Through a run and status, against a fresh simulated account.
	srv2 := runcomfytest.New(cfg)
	api2 := srv2.Start()
	defer srv2.Close()
	dir := t.TempDir()
	manifest, _ := writeManifest(t, dir, cfg.MaxRunning+4)
	env := []string{"RUNCOMFY_TOKEN=" + cfg.Token, "RUNCOMFY_API_BASE=" + api2, "RUNCOMFY_API_TOKEN=", "YOUR_API_TOKEN="}
	cmd, _, stderr := startBinary(t, env, "run", manifest, "-j", "64", "--rps", "100", "-q")
	deadline := time.Now().Add(time.Minute)
	for {
		r := runBinary(t, nil, "status", manifest, "--json")
		var s struct {
			Deepest int `json:"deepest_queue_position"`
		}
		if json.Unmarshal([]byte(r.stdout), &s) == nil && s.Deepest > 0 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("status never showed a deepest queue position:\n%s%s\nrun: %s", r.stdout, r.stderr, stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
}

// TestFakeRedownloadsFromAnEarlierProcess: an output deleted after a --fake
// run is downloaded again from the URL the ledger saved, which names the
// port of a simulated API that ended with its process: every connection of
// --fake goes to this process's own.
func TestFakeRedownloadsFromAnEarlierProcess(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	manifest := "../../examples/quickstart.yaml"
	args := []string{"--fake", "--ledger", filepath.Join(dir, "ledger.db"), "--out", filepath.Join(dir, "out"), "-q"}
	if r := runMain(t, nil, append([]string{"run", manifest}, args...)...); r.code != 0 {
		t.Fatalf("run exited %d:\n%s", r.code, r.stderr)
	}
	r := runMain(t, nil, append([]string{"status", manifest, "-v", "--json"}, args...)...)
	var s fakeStatus
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil || len(s.Jobs) == 0 || len(s.Jobs[0].Files) != 1 {
		t.Fatalf("status: %v\n%s%s", err, r.stdout, r.stderr)
	}
	j := s.Jobs[0]
	path := filepath.Join(dir, "out", j.Files[0].Path)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if r := runMain(t, nil, append([]string{"run", manifest}, args...)...); r.code != 0 {
		t.Fatalf("rerun exited %d:\n%s", r.code, r.stderr)
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, runcomfytest.OutputBytes(j.RequestID, 0)) {
		t.Fatalf("%s after the rerun: %d bytes, %v; want what request %s produced", path, len(got), err, j.RequestID)
	}
}
