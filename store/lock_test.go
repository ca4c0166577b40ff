package store

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"comfybatch/lifecycle"
)

func TestLockSecondOpen(t *testing.T) {
	path := ledgerPath(t)
	s := openAt(t, path, Options{})
	for _, opts := range []Options{{}, {NoSync: true}} {
		s2, err := Open(path, opts)
		if err == nil {
			s2.Close()
			t.Fatal("second Open of a held ledger succeeded")
		}
		if !errors.Is(err, ErrLocked) {
			t.Fatalf("second Open = %v, want ErrLocked", err)
		}
	}
	// The refused Open must not have disturbed the holder.
	if _, err := s.Sync(t.Context(), []Spec{spec("a", "fp")}); err != nil {
		t.Fatal(err)
	}
	must(t, s.Close())
	s3 := openAt(t, path, Options{})
	job(t, s3, "a")
}

// helper starts this test binary as a process that opens the ledger and
// waits for its first line of output ("locked").
func helper(t *testing.T, mode, path string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "STORE_LOCK_HELPER="+mode, "STORE_LEDGER="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	sc := bufio.NewScanner(out)
	line := make(chan string, 1)
	go func() {
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
	}()
	select {
	case l := <-line:
		if l != "locked" {
			t.Fatalf("helper said %q", l)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("helper did not take the lock in time")
	}
	return cmd, sc
}

func TestLockReleasedWhenHolderIsKilled(t *testing.T) {
	path := ledgerPath(t)
	cmd, _ := helper(t, "hold", path)

	_, err := Open(path, Options{})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("Open while another process holds the ledger = %v, want ErrLocked", err)
	}
	// A reader does not need the lock.
	ro := openAt(t, path, Options{ReadOnly: true})
	must(t, ro.Close())

	must(t, cmd.Process.Signal(syscall.SIGKILL))
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper ended with %v, want killed by SIGKILL", err)
	}
	s := openAt(t, path, Options{})
	if _, err := s.Sync(t.Context(), []Spec{spec("after", "fp")}); err != nil {
		t.Fatal(err)
	}
}

// TestAcknowledgedWritesSurviveKill kills a writing process at an arbitrary
// moment: every write it acknowledged must be in the ledger afterwards.
func TestAcknowledgedWritesSurviveKill(t *testing.T) {
	path := ledgerPath(t)
	cmd, sc := helper(t, "write", path)
	var acked []string
	for len(acked) < 400 && sc.Scan() {
		line := sc.Text()
		id, ok := strings.CutPrefix(line, "ack ")
		if !ok {
			t.Fatalf("helper said %q", line)
		}
		acked = append(acked, id)
	}
	must(t, cmd.Process.Signal(syscall.SIGKILL))
	// Acknowledgements written to the pipe before the kill are still there.
	for sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "ack "); ok {
			acked = append(acked, id)
		}
	}
	cmd.Wait()
	if len(acked) < 400 {
		t.Fatalf("only %d acknowledgements", len(acked))
	}

	s := openAt(t, path, Options{})
	known, err := s.Known(t.Context())
	must(t, err)
	for _, id := range acked {
		if k, ok := known[id]; !ok || k.State != lifecycle.Pending {
			t.Fatalf("acknowledged job %s lost after kill (%d acked, %d in ledger)", id, len(acked), len(known))
		}
		if evs := events(t, s, id); len(evs) != 1 || evs[0].Detail != "added" {
			t.Fatalf("job %s: events %+v", id, evs)
		}
	}
	t.Logf("%d acknowledged, %d in the ledger", len(acked), len(known))
}
