package store

import (
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"comfybatch/lifecycle"
)

func countRows(t testing.TB, s *Store, q string, args ...any) int {
	t.Helper()
	var n int
	must(t, s.db.QueryRow(q, args...).Scan(&n))
	return n
}

// queuedJobs adds n jobs named prefix00, prefix01, … and brings each to
// queued, where every transition a worker makes is allowed.
func queuedJobs(t *testing.T, s *Store, prefix string, n int) []Spec {
	t.Helper()
	var specs []Spec
	for i := 0; i < n; i++ {
		specs = append(specs, spec(fmt.Sprintf("%s%02d", prefix, i), "fp"))
	}
	_, err := s.Sync(t.Context(), specs)
	must(t, err)
	for _, sp := range specs {
		toState(t, s, sp.ID, lifecycle.Queued)
	}
	return specs
}

func TestGroupCommitManyWriters(t *testing.T) {
	const workers, writes = 64, 200
	s := newStore(t)
	specs := queuedJobs(t, s, "g", workers)
	base := countRows(t, s, "SELECT count(*) FROM events")

	var wg sync.WaitGroup
	errs := make(chan error, workers*writes)
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("g%02d", g)
			for i := 0; i < writes; i++ {
				st, remote := lifecycle.Running, "in_progress"
				if i%2 == 1 {
					st, remote = lifecycle.Queued, "in_queue"
				}
				if err := observe(t, s, id, st, remote, ptr(i)); err != nil {
					errs <- fmt.Errorf("%s write %d: %w", id, i, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := countRows(t, s, "SELECT count(*) FROM events"); n != base+workers*writes {
		t.Fatalf("%d events, want %d", n-base, workers*writes)
	}
	for _, sp := range specs {
		j := job(t, s, sp.ID)
		if j.State != lifecycle.Queued || j.QueuePosition == nil || *j.QueuePosition != writes-1 {
			t.Fatalf("%s ended as %+v", sp.ID, j)
		}
		if n := len(events(t, s, sp.ID)); n != 3+writes {
			t.Fatalf("%s has %d events, want %d", sp.ID, n, 3+writes)
		}
	}
}

// gate blocks the writer goroutine inside a write until release is closed,
// so that the writes queued meanwhile are all committed as one group.
func gate(t *testing.T, s *Store) (release func(), done <-chan error) {
	t.Helper()
	entered, open := make(chan struct{}), make(chan struct{})
	d := make(chan error, 1)
	go func() {
		d <- s.write(t.Context(), func(*sql.Tx) error {
			close(entered)
			<-open
			return nil
		})
	}()
	<-entered
	return func() { close(open) }, d
}

func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for len(s.writes) < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d writes queued", len(s.writes), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestFailingWriteInGroupRollsBackAlone puts good writes, refused transitions
// and writes that fail half-way into one commit group.
func TestFailingWriteInGroupRollsBackAlone(t *testing.T) {
	const n = 60
	s := newStore(t)
	specs := queuedJobs(t, s, "j", n)
	before := map[string]record{}
	for _, sp := range specs {
		before[sp.ID] = recordOf(t, s, sp.ID)
	}

	release, gated := gate(t, s)
	results := make([]chan error, n)
	for i := range results {
		results[i] = make(chan error, 1)
		id := specs[i].ID
		go func() {
			switch i % 3 {
			case 0: // good
				results[i] <- observe(t, s, id, lifecycle.Running, "in_progress", nil)
			case 1: // refused: a queued job cannot be marked done
				results[i] <- markDone(t, s, id)
			case 2: // fails after it has already written
				results[i] <- s.write(t.Context(), func(tx *sql.Tx) error {
					if _, err := tx.Exec("UPDATE jobs SET error = 'half-way' WHERE id = ?", id); err != nil {
						return err
					}
					if _, err := tx.Exec("INSERT INTO events (job_id, at, from_state, to_state) VALUES (?, 'x', 'queued', 'queued')", id); err != nil {
						return err
					}
					_, err := s.apply(tx, id, lifecycle.Step{To: lifecycle.Done}, false)
					return err
				})
			}
		}()
	}
	waitQueued(t, s, n)
	release()
	must(t, <-gated)

	for i, sp := range specs {
		err := <-results[i]
		switch i % 3 {
		case 0:
			if err != nil {
				t.Fatalf("good write %s failed: %v", sp.ID, err)
			}
			if j := job(t, s, sp.ID); j.State != lifecycle.Running || j.RemoteStatus != "in_progress" {
				t.Fatalf("good write %s lost: %+v", sp.ID, j)
			}
			lastEvent(t, s, sp.ID, lifecycle.Queued, lifecycle.Running, "remote status in_progress")
		default:
			if !errors.Is(err, ErrConflict) {
				t.Fatalf("bad write %s = %v, want ErrConflict", sp.ID, err)
			}
			if after := recordOf(t, s, sp.ID); !reflect.DeepEqual(before[sp.ID], after) {
				t.Fatalf("failed write %s left a trace:\nbefore %+v\nafter  %+v", sp.ID, before[sp.ID], after)
			}
		}
	}
}

// TestMixedWritesConcurrently does the same without forcing the groups: each
// worker alternates a good and a refused write on its own job.
func TestMixedWritesConcurrently(t *testing.T) {
	const workers, rounds = 32, 50
	s := newStore(t)
	specs := queuedJobs(t, s, "m", workers)
	var wg sync.WaitGroup
	var bad atomic.Int64
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := specs[g].ID
			for i := 0; i < rounds; i++ {
				st := lifecycle.Running
				if i%2 == 1 {
					st = lifecycle.Queued
				}
				if err := observe(t, s, id, st, string(st), nil); err != nil {
					t.Errorf("good write: %v", err)
				}
				if err := markDone(t, s, id); !errors.Is(err, ErrConflict) {
					t.Errorf("bad write = %v, want ErrConflict", err)
				}
				if err := beginSubmit(t, s, id); !errors.Is(err, ErrConflict) {
					t.Errorf("bad write = %v, want ErrConflict", err)
				}
				bad.Add(2)
			}
		}()
	}
	wg.Wait()
	for _, sp := range specs {
		if n := len(events(t, s, sp.ID)); n != 3+rounds {
			t.Fatalf("%s has %d events, want %d", sp.ID, n, 3+rounds)
		}
		if subs := submissions(t, s, sp.ID); len(subs) != 1 {
			t.Fatalf("%s: refused BeginSubmit left a submission: %+v", sp.ID, subs)
		}
	}
	if bad.Load() != 2*workers*rounds {
		t.Fatal("not every bad write ran")
	}
}

// A lone failing write is rolled back too (it is not wrapped in a savepoint).
func TestFailingWriteAlone(t *testing.T) {
	s := newStore(t)
	_, err := s.Sync(t.Context(), []Spec{spec("a", "fp")})
	must(t, err)
	before := recordOf(t, s, "a")
	boom := errors.New("boom")
	err = s.write(t.Context(), func(tx *sql.Tx) error {
		if _, err := tx.Exec("UPDATE jobs SET error = 'half-way' WHERE id = 'a'"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("write = %v", err)
	}
	if after := recordOf(t, s, "a"); !reflect.DeepEqual(before, after) {
		t.Fatal("a failed lone write was committed")
	}
	// The writer carries on.
	toState(t, s, "a", lifecycle.Done)
}

func withTimeout(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s hung", what)
	}
}

func TestWriteAfterClose(t *testing.T) {
	s := newStore(t)
	_, err := s.Sync(t.Context(), []Spec{spec("a", "fp")})
	must(t, err)
	must(t, s.Close())
	withTimeout(t, "writes after Close", func() {
		if err := beginSubmit(t, s, "a"); !errors.Is(err, ErrClosed) {
			t.Errorf("BeginSubmit after Close = %v, want ErrClosed", err)
		}
		if _, err := s.Sync(t.Context(), []Spec{spec("b", "fp")}); !errors.Is(err, ErrClosed) && err == nil {
			t.Errorf("Sync after Close = %v", err)
		}
		if err := markDone(t, s, "a"); !errors.Is(err, ErrClosed) {
			t.Errorf("MarkDone after Close = %v, want ErrClosed", err)
		}
		if _, err := s.Recover(t.Context()); !errors.Is(err, ErrClosed) {
			t.Errorf("Recover after Close = %v, want ErrClosed", err)
		}
	})
	must(t, s.Close())
}

// TestCloseWhileWriting closes the ledger under a stream of writes: each write
// either lands or reports ErrClosed, nothing panics or hangs, and every
// acknowledged write is in the ledger when it is opened again.
func TestCloseWhileWriting(t *testing.T) {
	path := ledgerPath(t)
	s := openAt(t, path, Options{})
	const workers = 16
	specs := queuedJobs(t, s, "c", workers)
	var wg sync.WaitGroup
	acked := make([]int, workers)
	var total atomic.Int64
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				st := lifecycle.Running
				if i%2 == 1 {
					st = lifecycle.Queued
				}
				err := observe(t, s, specs[g].ID, st, string(st), nil)
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("write %s/%d: %v", specs[g].ID, i, err)
					return
				}
				acked[g]++
				total.Add(1)
			}
		}()
	}
	for total.Load() < 300 {
		time.Sleep(time.Millisecond)
	}
	withTimeout(t, "Close under load", func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	withTimeout(t, "writers after Close", wg.Wait)

	s2 := openAt(t, path, Options{})
	for g, sp := range specs {
		// Three events to reach queued, then one per acknowledged write and
		// none for a write refused with ErrClosed.
		if n := len(events(t, s2, sp.ID)); n != 3+acked[g] {
			t.Fatalf("%s: %d events after reopen, %d writes acknowledged", sp.ID, n-3, acked[g])
		}
	}
}

func TestAcknowledgedWriteIsVisibleToReader(t *testing.T) {
	path := ledgerPath(t)
	w := openAt(t, path, Options{})
	ro := openAt(t, path, Options{ReadOnly: true})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				id := fmt.Sprintf("v%d-%02d", g, i)
				if _, err := w.Sync(t.Context(), []Spec{spec(id, "fp")}); err != nil {
					t.Error(err)
					return
				}
				if _, err := ro.Job(t.Context(), id); err != nil {
					t.Errorf("acknowledged %s not visible to a reader: %v", id, err)
				}
				if err := beginSubmit(t, w, id); err != nil {
					t.Error(err)
					return
				}
				if j, err := ro.Job(t.Context(), id); err != nil || j.State != lifecycle.Submitting {
					t.Errorf("acknowledged BeginSubmit of %s not visible: %+v %v", id, j, err)
				}
			}
		}()
	}
	wg.Wait()
}

// TestGroupCommitBatchesAcrossWorkers shows the writer committing the writes
// of many workers in one transaction, one fsync: while it is busy with a
// commit, the writes that arrive queue up and go together in the next one.
func TestGroupCommitBatchesAcrossWorkers(t *testing.T) {
	const workers = 64
	s := newStore(t)
	specs := queuedJobs(t, s, "w", workers)
	before := s.WriterStats()

	release, gated := gate(t, s) // the writer is now busy with a commit
	var wg sync.WaitGroup
	for _, sp := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := observe(t, s, sp.ID, lifecycle.Running, "in_progress", nil); err != nil {
				t.Error(err)
			}
		}()
	}
	waitQueued(t, s, workers)
	release()
	wg.Wait()
	must(t, <-gated)

	got := s.WriterStats()
	writes, commits := got.Writes-before.Writes, got.Commits-before.Commits
	if writes != workers+1 || commits != 2 {
		t.Fatalf("%d writes in %d commits; want %d writes in 2 (the gate's, then all the workers' together)", writes, commits, workers+1)
	}
}

// TestGroupFailsWholeWhenSQLiteDropsTheTransaction: a write after which
// SQLite has rolled back the whole transaction (as on an I/O error or a full
// disk; here an explicit ROLLBACK) fails every write of its group, and none
// of them lands: the writes after it must not commit outside the group while
// being told they failed.
func TestGroupFailsWholeWhenSQLiteDropsTheTransaction(t *testing.T) {
	s := newStore(t)
	specs := queuedJobs(t, s, "r", 6)
	before := map[string]record{}
	for _, sp := range specs {
		before[sp.ID] = recordOf(t, s, sp.ID)
	}
	release, gated := gate(t, s)
	results := make(chan error, len(specs)+1)
	write := func(fn func() error) {
		go func() { results <- fn() }()
	}
	for i, sp := range specs {
		if i == 3 {
			write(func() error {
				return s.write(t.Context(), func(tx *sql.Tx) error {
					tx.Exec("ROLLBACK")
					return errors.New("disk full")
				})
			})
		}
		write(func() error { return observe(t, s, sp.ID, lifecycle.Running, "in_progress", nil) })
	}
	waitQueued(t, s, len(specs)+1)
	release()
	must(t, <-gated)
	for range len(specs) + 1 {
		if err := <-results; err == nil {
			t.Error("a write of the failed group reported success")
		}
	}
	for _, sp := range specs {
		if got := recordOf(t, s, sp.ID); !reflect.DeepEqual(got, before[sp.ID]) {
			t.Errorf("job %s changed although its write failed:\n got %+v\nwant %+v", sp.ID, got, before[sp.ID])
		}
	}
	// The writer goes on: the next write lands.
	must(t, observe(t, s, specs[0].ID, lifecycle.Running, "in_progress", nil))
	if j := job(t, s, specs[0].ID); j.State != lifecycle.Running {
		t.Fatalf("after the failed group, job is %s, want running", j.State)
	}
}

// TestFailedCommitFailsTheWrite: a write whose transaction cannot commit
// (here it has been rolled back under it) is told so, never acknowledged as
// saved.
func TestFailedCommitFailsTheWrite(t *testing.T) {
	s := newStore(t)
	err := s.write(t.Context(), func(tx *sql.Tx) error {
		_, err := tx.Exec("ROLLBACK")
		return err
	})
	if err == nil {
		t.Fatal("a write whose commit failed was acknowledged")
	}
}
