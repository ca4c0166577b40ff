package main

import (
	"math/rand/v2"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"comfybatch/runcomfy/runcomfytest"
)

// TestKillAnywhere SIGKILLs the binary at seeded random moments of a 200-job
// run, then lets it finish: every job ends done, and every job was submitted
// exactly once, except those the ledger reported unknown (a kill between
// "submitting" and the saved request id), which are counted and then
// finished with --resubmit-unknown.
func TestKillAnywhere(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a 200-job run repeatedly")
	}
	srv := runcomfytest.New(runcomfytest.Config{QueueTime: 100 * time.Millisecond, RunTime: 300 * time.Millisecond, Jitter: 0.8, SubmitDelay: 150 * time.Millisecond, Token: testToken, Seed: 2})
	api := srv.Start()
	defer srv.Close()
	dir := t.TempDir()
	manifest, jobs := writeManifest(t, dir, 200)
	env := tokenEnv(api)
	rng := rand.New(rand.NewPCG(20261124, 7))

	kills := 0
	for i := 0; i < 14; i++ {
		cmd, _, stderr := startBinary(t, env, "run", manifest, "-j", "16", "--rps", "2000")
		wait := time.Duration(50+rng.IntN(1500)) * time.Millisecond
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if c := exitCodeOf(err); c != 0 && c != 1 {
				t.Fatalf("run %d exited %d before the kill:\n%s", i, c, stderr)
			}
		case <-time.After(wait):
			cmd.Process.Signal(syscall.SIGKILL)
			<-done
			kills++
		}
	}
	if kills < 10 {
		t.Fatalf("only %d of the runs were killed; the run finishes too fast for this test", kills)
	}

	// Finish without the flag: unknown jobs must stay untouched.
	r := runBinary(t, env, "run", manifest, "-j", "16", "--rps", "2000")
	s := status(t, manifest)
	unknown := map[string]bool{}
	for _, j := range s.Jobs {
		if j.State == "unknown" {
			unknown[j.ID] = true
		}
	}
	t.Logf("%d kills; %d jobs were cut off mid-submission and reported unknown", kills, len(unknown))
	if len(unknown) == 0 && r.code != 0 {
		t.Fatalf("final run exited %d with no unknown jobs:\n%s", r.code, r.stderr)
	}
	if len(unknown) > 0 && r.code != 1 {
		t.Fatalf("final run with unknown jobs exited %d, want 1:\n%s", r.code, r.stderr)
	}
	for id, n := range submissionsPerJob(t, srv, jobs) {
		if unknown[id] {
			if n > 1 {
				t.Errorf("unknown job %s was submitted %d times before --resubmit-unknown", id, n)
			}
			continue
		}
		if n != 1 {
			t.Errorf("job %s submitted %d times", id, n)
		}
	}

	if len(unknown) > 0 {
		r = runBinary(t, env, "run", manifest, "-j", "16", "--resubmit-unknown")
		if r.code != 0 {
			t.Fatalf("run --resubmit-unknown exited %d:\n%s", r.code, r.stderr)
		}
	}
	s = status(t, manifest)
	checkOutputs(t, dir, s, jobs)
	for id, n := range submissionsPerJob(t, srv, jobs) {
		if n != 1 && !(unknown[id] && n == 2) {
			t.Errorf("job %s submitted %d times (unknown: %v)", id, n, unknown[id])
		}
	}
}

// TestInterrupt sends SIGINT mid-run: exit 130 within 10 s with the
// message, no job unknown, and the rerun finishes with one submission per job.
func TestInterrupt(t *testing.T) {
	srv := runcomfytest.New(runcomfytest.Config{QueueTime: 500 * time.Millisecond, RunTime: 3 * time.Second, Token: testToken, Seed: 3})
	api := srv.Start()
	defer srv.Close()
	dir := t.TempDir()
	manifest, jobs := writeManifest(t, dir, 60)
	env := tokenEnv(api)

	cmd, _, stderr := startBinary(t, env, "run", manifest, "-j", "16")
	time.Sleep(1500 * time.Millisecond)
	sent := time.Now()
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if c := exitCodeOf(err); c != 130 {
			t.Fatalf("exit %d after SIGINT, want 130:\n%s", c, stderr)
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("still running 10 s after SIGINT:\n%s", stderr)
	}
	t.Logf("exited %v after SIGINT", time.Since(sent))
	if !strings.Contains(stderr.String(), "stopping: no new submissions") {
		t.Errorf("stderr lacks the stopping message:\n%s", stderr)
	}
	if !strings.Contains(stderr.String(), "interrupted: ") || !strings.Contains(stderr.String(), "run the same command again") {
		t.Errorf("stderr lacks the interrupted message:\n%s", stderr)
	}
	s := status(t, manifest)
	if s.Counts["unknown"] != 0 || s.Counts["submitting"] != 0 {
		t.Fatalf("a graceful stop left jobs unknown or submitting: %v", s.Counts)
	}
	if s.Counts["queued"]+s.Counts["running"] == 0 {
		t.Fatalf("no job was in flight at the interrupt, the test proves nothing: %v", s.Counts)
	}

	r := runBinary(t, env, "run", manifest, "-j", "16")
	if r.code != 0 {
		t.Fatalf("rerun exited %d:\n%s", r.code, r.stderr)
	}
	checkOutputs(t, dir, status(t, manifest), jobs)
	for id, n := range submissionsPerJob(t, srv, jobs) {
		if n != 1 {
			t.Errorf("job %s submitted %d times", id, n)
		}
	}
}

// TestAmbiguousSubmit cuts the connection after the fake created the job:
// those jobs are parked unknown, never resubmitted without the flag, and the
// run exits 1.
func TestAmbiguousSubmit(t *testing.T) {
	srv := runcomfytest.New(runcomfytest.Config{DropSubmitRate: 0.3, Token: testToken, Seed: 4})
	api := srv.Start()
	defer srv.Close()
	dir := t.TempDir()
	manifest, jobs := writeManifest(t, dir, 40)
	env := tokenEnv(api)

	r := runBinary(t, env, "run", manifest, "-j", "8")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", r.code, r.stderr)
	}
	dropped := int(srv.Stats().Dropped)
	s := status(t, manifest)
	if dropped == 0 || s.Counts["unknown"] != dropped {
		t.Fatalf("unknown = %d, dropped by the fake = %d", s.Counts["unknown"], dropped)
	}
	if s.Counts["done"] != len(jobs)-dropped {
		t.Fatalf("done = %d, want %d", s.Counts["done"], len(jobs)-dropped)
	}
	if !strings.Contains(r.stderr, "--resubmit-unknown") {
		t.Errorf("stderr does not say what to do about unknown jobs:\n%s", r.stderr)
	}

	before := srv.Stats().Submits
	r = runBinary(t, env, "run", manifest)
	if r.code != 1 || srv.Stats().Submits != before {
		t.Fatalf("rerun without the flag: exit %d, %d new submissions; want 1 and none", r.code, srv.Stats().Submits-before)
	}
	for id, n := range submissionsPerJob(t, srv, jobs) {
		if n != 1 {
			t.Errorf("job %s submitted %d times", id, n)
		}
	}

	srv.Update(func(c *runcomfytest.Config) { c.DropSubmitRate = 0 })
	r = runBinary(t, env, "run", manifest, "--resubmit-unknown")
	if r.code != 0 {
		t.Fatalf("--resubmit-unknown exited %d:\n%s", r.code, r.stderr)
	}
	if got := srv.Stats().Submits - before; int(got) != dropped {
		t.Fatalf("--resubmit-unknown made %d submissions, want %d", got, dropped)
	}
	checkOutputs(t, dir, status(t, manifest), jobs)
}
