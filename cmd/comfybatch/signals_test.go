package main

import (
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"comfybatch/runcomfy/runcomfytest"
)

// TestStages: the first signal ends the intake only; the second ends the
// work too.
func TestStages(t *testing.T) {
	sigs := make(chan os.Signal, 2)
	var errb strings.Builder
	intake, work, stop := stages(sigs, &errb)
	defer stop()
	sigs <- syscall.SIGHUP
	select {
	case <-intake.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the first signal did not end the intake")
	}
	time.Sleep(50 * time.Millisecond)
	if work.Err() != nil {
		t.Fatal("the first signal ended the work too")
	}
	sigs <- os.Interrupt
	select {
	case <-work.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the second signal did not end the work")
	}
	if !strings.Contains(errb.String(), "second signal") {
		t.Errorf("nothing said of the second signal: %q", errb.String())
	}
	// No signal source at all: nothing ends until stop.
	in2, w2, stop2 := stages(nil, io.Discard)
	if in2.Err() != nil || w2.Err() != nil {
		t.Fatal("stages without signals ended early")
	}
	stop2()
}

// TestSignalsThroughTheBinary: SIGHUP takes the graceful path (a POST on the
// wire finishes and its request id is saved, exit 130); a second signal
// during such a POST stops at once, and the job it cut off is reported
// unknown, never lost and never resubmitted by a plain rerun.
func TestSignalsThroughTheBinary(t *testing.T) {
	// The fake answers each POST this late, after creating the job: longer
	// than hardStop, which a first signal must not start (nothing failed
	// when it did, with a delay shorter than it).
	const delay = hardStop + 2*time.Second
	for _, tt := range []struct {
		name    string
		signals []os.Signal
		want    string // the cut-off job's state
	}{
		{"SIGHUP once", []os.Signal{syscall.SIGHUP}, "queued"},
		{"SIGTERM once", []os.Signal{syscall.SIGTERM}, "queued"},
		{"SIGINT twice", []os.Signal{os.Interrupt, os.Interrupt}, "unknown"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, env := serveFake(t, runcomfytest.Config{SubmitDelay: delay, QueueTime: 2 * time.Second})
			manifest, jobs := writeManifest(t, t.TempDir(), 3)
			cmd, _, stderr := startBinary(t, env, "run", manifest, "-j", "1")
			deadline := time.Now().Add(20 * time.Second)
			for srv.Stats().Created < 1 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			sent := time.Now()
			for _, s := range tt.signals {
				cmd.Process.Signal(s)
				time.Sleep(100 * time.Millisecond)
			}
			err := cmd.Wait()
			took := time.Since(sent)
			t.Logf("exited %v after the signal", took)
			if c := exitCodeOf(err); c != 130 {
				t.Fatalf("exit %d, want 130:\n%s", c, stderr)
			}
			graceful := len(tt.signals) == 1
			if graceful && took < delay-time.Second {
				t.Fatalf("exited %v after the signal, before the POST on the wire was answered", took)
			}
			if !graceful && took > delay-time.Second {
				t.Fatalf("exited %v after the second signal: it did not stop at once", took)
			}
			s := status(t, manifest)
			if s.Counts[tt.want] != 1 || s.Counts["pending"] != 2 || srv.Stats().Created != 1 {
				t.Fatalf("counts %v, created %d; want one %s and two pending:\n%s", s.Counts, srv.Stats().Created, tt.want, stderr)
			}
			// A plain rerun never submits the cut-off job again.
			srv.Update(func(c *runcomfytest.Config) { c.SubmitDelay = 0 })
			r := runBinary(t, env, "run", manifest, "--poll-max", "50ms")
			for id, n := range submissionsPerJob(t, srv, jobs) {
				if n > 1 {
					t.Fatalf("job %s submitted %d times", id, n)
				}
			}
			if graceful && r.code != 0 || !graceful && r.code != 1 {
				t.Fatalf("rerun exit %d:\n%s", r.code, r.stderr)
			}
		})
	}
}
