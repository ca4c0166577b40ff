package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"comfybatch/runcomfy/runcomfytest"
)

// TestLedgerCopiedWithoutWAL kills a run, then copies only its .db (not the
// -wal) next to the manifest elsewhere: `run` and `status` there refuse it
// (exit 2, naming the missing -wal) and submit nothing, instead of reading
// a ledger that lacks what was written since its last checkpoint. The
// original, with its -wal, finishes with every job submitted once.
func TestLedgerCopiedWithoutWAL(t *testing.T) {
	srv, env := serveFake(t, runcomfytest.Config{QueueTime: 2 * time.Second, Seed: 11})
	dir := t.TempDir()
	manifest, jobs := writeManifest(t, dir, 30)

	cmd, _, stderr := startBinary(t, env, "run", manifest, "-j", "8", "--rps", "1000")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			select {
			case err := <-done:
				t.Fatalf("run ended (exit %d) before %s:\n%s", exitCodeOf(err), what, stderr)
			case <-time.After(10 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				<-done
				t.Fatalf("no %s in 30 s:\n%s", what, stderr)
			}
		}
	}
	waitFor("5 jobs created", func() bool { return srv.Stats().Created >= 5 })
	// Let the first wave's submissions record their request ids (nothing
	// else is submitted until a job finishes, QueueTime later), so that the
	// kill leaves no job unknown and the final run has nothing ambiguous.
	last, quietSince := srv.Stats().Submits, time.Now()
	waitFor("quiet moment", func() bool {
		if n := srv.Stats().Submits; n != last {
			last, quietSince = n, time.Now()
		}
		return time.Since(quietSince) > 300*time.Millisecond
	})
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-done

	ledger := filepath.Join(dir, "jobs.ledger.db")
	if st, err := os.Stat(ledger + "-wal"); err != nil || st.Size() == 0 {
		t.Fatalf("the killed run left no -wal (%v): the test proves nothing", err)
	}

	// Only the .db goes along with the manifest.
	copyDir := t.TempDir()
	copyManifest := filepath.Join(copyDir, "jobs.yaml")
	copyLedger := filepath.Join(copyDir, "jobs.ledger.db")
	for src, dst := range map[string]string{manifest: copyManifest, ledger: copyLedger} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	copied, err := os.ReadFile(copyLedger)
	if err != nil {
		t.Fatal(err)
	}
	untouched := func(after string) {
		t.Helper()
		if b, err := os.ReadFile(copyLedger); err != nil || !bytes.Equal(b, copied) {
			t.Errorf("after %s the copied .db changed (%v)", after, err)
		}
		for _, ext := range []string{"-wal", "-shm"} {
			if _, err := os.Stat(copyLedger + ext); err == nil {
				t.Errorf("after %s there is a %s beside the copied .db", after, ext)
			}
		}
	}
	errorLine := func(out string) string {
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "error: ") {
				return l
			}
		}
		return ""
	}
	wantMsg := func(cmdName string, r result) string {
		t.Helper()
		line := errorLine(r.stderr)
		if !strings.Contains(line, copyLedger+"-wal") || !strings.Contains(line, "not closed cleanly") || !strings.Contains(line, "copy them together") {
			t.Errorf("%s on the copy: stderr does not name the missing -wal and say what to do:\n%s", cmdName, r.stderr)
		}
		return line
	}

	submits := srv.Stats().Submits
	r := runBinary(t, env, "run", copyManifest, "-j", "8", "--rps", "1000")
	if n := srv.Stats().Submits - submits; n != 0 {
		t.Errorf("run on the copy submitted %d jobs, want none", n)
	}
	runLine := wantMsg("run", r)
	untouched("run")
	if r.code != exitUsage {
		t.Errorf("run on the copy exited %d, want %d:\n%s", r.code, exitUsage, r.stderr)
	}

	r = runBinary(t, nil, "status", copyManifest)
	statusLine := wantMsg("status", r)
	if statusLine != runLine {
		t.Errorf("status and run say different things:\nrun:    %s\nstatus: %s", runLine, statusLine)
	}
	untouched("status")
	if r.code != exitUsage {
		t.Errorf("status on the copy exited %d, want %d (store.ErrIncomplete → exitUsage in exitCode)", r.code, exitUsage)
	}

	// The original ledger, with its -wal, finishes the run.
	r = runBinary(t, env, "run", manifest, "-j", "8", "--rps", "1000")
	if r.code != 0 {
		t.Fatalf("run on the original exited %d:\n%s", r.code, r.stderr)
	}
	checkOutputs(t, dir, status(t, manifest), jobs)
	for id, n := range submissionsPerJob(t, srv, jobs) {
		if n != 1 {
			t.Errorf("job %s submitted %d times", id, n)
		}
	}
}
