package store

import (
	"bytes"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"comfybatch/lifecycle"
)

// These tests are about the ledger's files: the .db, its -wal and -shm. A
// clean Close leaves the .db complete on its own; read-only opens never
// touch the -wal; a .db whose -wal went missing after an unclean stop is
// refused (ErrIncomplete), and a damaged one gets ErrCorrupt.

// copyFile copies src to dst byte for byte.
func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	must(t, err)
	must(t, os.WriteFile(dst, b, 0o644))
}

func readBytes(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return b
}

// jobCount opens path as opts says and counts its jobs.
func jobCount(t testing.TB, path string, opts Options) int {
	t.Helper()
	s := openAt(t, path, opts)
	known, err := s.Known(t.Context())
	must(t, err)
	must(t, s.Close())
	return len(known)
}

// killedLedger runs a helper process that adds jobs to a new ledger, SIGKILLs
// it after at least n acknowledged writes, and returns the ledger's path and
// the acknowledged ids. The ledger is left as an unclean stop leaves it: a
// .db with its -wal and -shm.
func killedLedger(t *testing.T, n int) (string, []string) {
	t.Helper()
	path := ledgerPath(t)
	cmd, sc := helper(t, "write", path)
	var acked []string
	for len(acked) < n && sc.Scan() {
		id, ok := strings.CutPrefix(sc.Text(), "ack ")
		if !ok {
			t.Fatalf("helper said %q", sc.Text())
		}
		acked = append(acked, id)
	}
	must(t, cmd.Process.Signal(syscall.SIGKILL))
	for sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "ack "); ok {
			acked = append(acked, id)
		}
	}
	cmd.Wait()
	if len(acked) < n {
		t.Fatalf("only %d acknowledgements", len(acked))
	}
	if st, err := os.Stat(path + "-wal"); err != nil || st.Size() == 0 {
		t.Fatalf("the killed writer left no -wal (%v): the test proves nothing", err)
	}
	return path, acked
}

func checkAcked(t *testing.T, s *Store, acked []string) {
	t.Helper()
	known, err := s.Known(t.Context())
	must(t, err)
	for _, id := range acked {
		if k, ok := known[id]; !ok || k.State != lifecycle.Pending {
			t.Fatalf("acknowledged job %s not visible (%d acked, %d in ledger)", id, len(acked), len(known))
		}
	}
}

// TestCleanCloseLeavesCompleteMainFile: after a clean Close the .db alone,
// copied without its -wal, holds every job, even when a reader (a status
// beside the run) still has the ledger open while the run closes.
func TestCleanCloseLeavesCompleteMainFile(t *testing.T) {
	for _, withReader := range []bool{false, true} {
		t.Run(fmt.Sprintf("reader=%v", withReader), func(t *testing.T) {
			path := ledgerPath(t)
			w := openAt(t, path, Options{})
			var ro *Store
			if withReader {
				ro = openAt(t, path, Options{ReadOnly: true})
			}
			const n = 300
			for b := 0; b < n; b += 50 {
				specs := make([]Spec, 0, 50)
				for i := b; i < b+50; i++ {
					specs = append(specs, spec(fmt.Sprintf("j%04d", i), "fp"))
				}
				if _, err := w.Sync(t.Context(), specs); err != nil {
					t.Fatal(err)
				}
				if ro != nil {
					if _, err := ro.Known(t.Context()); err != nil {
						t.Fatal(err)
					}
				}
			}
			toState(t, w, "j0007", lifecycle.Done)
			must(t, w.Close())

			// Only the .db, copied while the reader may still hold the ledger.
			cp := filepath.Join(t.TempDir(), "copy.db")
			copyFile(t, path, cp)
			if ro != nil {
				must(t, ro.Close())
			}
			for _, opts := range []Options{{ReadOnly: true}, {}} {
				if got := jobCount(t, cp, opts); got != n {
					t.Fatalf("the .db alone after a clean Close, opened %+v: %d jobs, want %d", opts, got, n)
				}
			}
			s := openAt(t, cp, Options{ReadOnly: true})
			if j := job(t, s, "j0007"); j.State != lifecycle.Done {
				t.Fatalf("j0007 in the copy: %+v", j)
			}
		})
	}
}

// TestReadOnlyLeavesWALAlone: after an unclean stop, a read-only open reads
// what was written before the kill from the -wal and leaves the -wal (and
// the .db) exactly as they were.
func TestReadOnlyLeavesWALAlone(t *testing.T) {
	path, acked := killedLedger(t, 300)
	wal := readBytes(t, path+"-wal")
	db := readBytes(t, path)

	for i := 0; i < 2; i++ {
		ro := openAt(t, path, Options{ReadOnly: true})
		checkAcked(t, ro, acked)
		if _, err := ro.Counts(t.Context()); err != nil {
			t.Fatal(err)
		}
		must(t, ro.EachJobState(t.Context(), func(string, lifecycle.State) error { return nil }))
		must(t, ro.Close())

		st, err := os.Stat(path + "-wal")
		if err != nil {
			t.Fatalf("read-only open %d removed the -wal: %v", i+1, err)
		}
		if st.Size() != int64(len(wal)) || !bytes.Equal(readBytes(t, path+"-wal"), wal) {
			t.Fatalf("read-only open %d changed the -wal: %d bytes, was %d", i+1, st.Size(), len(wal))
		}
		if !bytes.Equal(readBytes(t, path), db) {
			t.Fatalf("read-only open %d changed the .db", i+1)
		}
	}
	// The writer that comes next still finds everything.
	s := openAt(t, path, Options{})
	checkAcked(t, s, acked)
}

// TestIncompleteLedgerRefused: the .db of a ledger stopped uncleanly, without
// its -wal, is refused in both modes and left untouched; with the -wal put
// back it opens with everything.
func TestIncompleteLedgerRefused(t *testing.T) {
	path, acked := killedLedger(t, 300)

	refused := func(t *testing.T, cp string) {
		t.Helper()
		dir := filepath.Dir(cp)
		before := snapshot(t, dir)
		for _, opts := range []Options{{}, {ReadOnly: true}, {NoSync: true}} {
			s, err := Open(cp, opts)
			if err == nil {
				known, _ := s.Known(t.Context())
				s.Close()
				t.Fatalf("Open(%+v) of a .db without its -wal succeeded (%d of %d acknowledged jobs in it)", opts, len(known), len(acked))
			}
			if !errors.Is(err, ErrIncomplete) {
				t.Fatalf("Open(%+v) = %v, want ErrIncomplete", opts, err)
			}
			if msg := err.Error(); !strings.Contains(msg, cp+"-wal") || !strings.Contains(msg, "not closed cleanly") || !strings.Contains(msg, "copy them together") {
				t.Fatalf("Open(%+v) message does not say what happened and what to do: %s", opts, msg)
			}
			sameSnapshot(t, before, snapshot(t, dir))
		}
	}

	t.Run("no -wal", func(t *testing.T) {
		cp := filepath.Join(t.TempDir(), "ledger.db")
		copyFile(t, path, cp)
		refused(t, cp)

		// The -wal put back: everything is there.
		copyFile(t, path+"-wal", cp+"-wal")
		ro := openAt(t, cp, Options{ReadOnly: true})
		checkAcked(t, ro, acked)
		must(t, ro.Close())
		w := openAt(t, cp, Options{})
		checkAcked(t, w, acked)
		must(t, w.Close())
		// Closed cleanly, the .db alone is now complete.
		cp2 := filepath.Join(t.TempDir(), "ledger.db")
		copyFile(t, cp, cp2)
		ro2 := openAt(t, cp2, Options{ReadOnly: true})
		checkAcked(t, ro2, acked)
	})

	t.Run("empty -wal", func(t *testing.T) {
		cp := filepath.Join(t.TempDir(), "ledger.db")
		copyFile(t, path, cp)
		must(t, os.WriteFile(cp+"-wal", nil, 0o644))
		refused(t, cp)
	})

	t.Run("killed right after Open", func(t *testing.T) {
		p := ledgerPath(t)
		// Create it and close it cleanly first, so that the flag the
		// helper's Open sets is what makes the difference.
		must(t, openAt(t, p, Options{}).Close())
		cmd, _ := helper(t, "hold", p)
		if st, err := os.Stat(p + "-wal"); err != nil || st.Size() <= 32 {
			t.Fatalf("a live writer's -wal is empty (%v): an empty -wal would look like a lost one", err)
		}
		// A reader beside the live writer is fine.
		ro := openAt(t, p, Options{ReadOnly: true})
		must(t, ro.Close())
		must(t, cmd.Process.Signal(syscall.SIGKILL))
		cmd.Wait()

		cp := filepath.Join(t.TempDir(), "ledger.db")
		copyFile(t, p, cp)
		refused(t, cp)
		// The original, with its -wal, opens.
		must(t, openAt(t, p, Options{ReadOnly: true}).Close())
		must(t, openAt(t, p, Options{}).Close())
	})

	// The original, with its -wal, is fine in both modes.
	ro := openAt(t, path, Options{ReadOnly: true})
	checkAcked(t, ro, acked)
	must(t, ro.Close())
	w := openAt(t, path, Options{})
	checkAcked(t, w, acked)
}

// TestReadOnlyRightAfterWriterOpen: a reader that comes while the writer has
// opened the ledger and written nothing yet is not mistaken for a reader of
// an incomplete ledger.
func TestReadOnlyRightAfterWriterOpen(t *testing.T) {
	path := ledgerPath(t)
	must(t, openAt(t, path, Options{}).Close())
	w := openAt(t, path, Options{})
	ro := openAt(t, path, Options{ReadOnly: true})
	if _, err := w.Sync(t.Context(), []Spec{spec("a", "fp")}); err != nil {
		t.Fatal(err)
	}
	job(t, ro, "a")
}

// writeV1Ledger builds a ledger as comfybatch before the ledger_state table
// made it: version 1, in WAL mode, with one pending job "old".
func writeV1Ledger(t *testing.T, path string) {
	t.Helper()
	body, err := migrations.ReadFile("migrations/0001_init.sql")
	must(t, err)
	db, err := sql.Open("sqlite3", dsn(path, "_journal_mode=DELETE"))
	must(t, err)
	db.SetMaxOpenConns(1)
	for _, q := range []string{
		fmt.Sprintf("PRAGMA application_id = %d", ApplicationID),
		string(body),
		"PRAGMA user_version = 1",
		"PRAGMA journal_mode = WAL",
		`INSERT INTO jobs (id, model, input, fingerprint, created_at, updated_at) VALUES ('old', 'm', '{}', 'fp', 'x', 'x')`,
		`INSERT INTO events (job_id, at, from_state, to_state, detail) VALUES ('old', 'x', '', 'pending', 'added')`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%.40s: %v", q, err)
		}
	}
	must(t, db.Close())
}

func headerVersion(t *testing.T, path string) int {
	t.Helper()
	return int(binary.BigEndian.Uint32(readBytes(t, path)[60:64]))
}

// TestVersion1LedgerUpgrades: a ledger written before ledger_state existed is
// read as it is, upgraded by the first writer, and then behaves like any.
func TestVersion1LedgerUpgrades(t *testing.T) {
	path := ledgerPath(t)
	writeV1Ledger(t, path)
	if v := headerVersion(t, path); v != 1 {
		t.Fatalf("fixture version %d", v)
	}

	// A reader refuses an older ledger, as it always has, and leaves it be.
	before := snapshot(t, filepath.Dir(path))
	if _, err := Open(path, Options{ReadOnly: true}); err == nil || !strings.Contains(err.Error(), "older") {
		t.Fatalf("read-only Open of a version-1 ledger = %v, want an 'older' error", err)
	}
	sameSnapshot(t, before, snapshot(t, filepath.Dir(path)))

	w := openAt(t, path, Options{})
	if j := job(t, w, "old"); j.State != lifecycle.Pending {
		t.Fatalf("old job after upgrade: %+v", j)
	}
	var open int
	must(t, w.wdb.QueryRow("SELECT open FROM ledger_state").Scan(&open))
	if open != 1 {
		t.Fatalf("ledger_state.open = %d while a writer holds the ledger", open)
	}
	if _, err := w.Sync(t.Context(), []Spec{spec("old", "fp"), spec("new", "fp")}); err != nil {
		t.Fatal(err)
	}
	must(t, w.Close())
	if v := headerVersion(t, path); v != migrationCount() || v < 2 {
		t.Fatalf("after upgrade the .db says version %d, want %d", v, migrationCount())
	}

	// A clean version-2 ledger: the .db alone opens in both modes.
	cp := filepath.Join(t.TempDir(), "ledger.db")
	copyFile(t, path, cp)
	for _, opts := range []Options{{ReadOnly: true}, {}} {
		if got := jobCount(t, cp, opts); got != 2 {
			t.Fatalf("Open(%+v) of the upgraded ledger: %d jobs, want 2", opts, got)
		}
	}
	s := openAt(t, path, Options{})
	var rows int
	must(t, s.wdb.QueryRow("SELECT count(*) FROM ledger_state").Scan(&rows))
	if rows != 1 {
		t.Fatalf("ledger_state has %d rows", rows)
	}
}

// manyPages makes a closed ledger of a few hundred jobs with events and
// files, many pages, and returns its path, bytes and page size.
func manyPages(t *testing.T) (path string, good []byte, pageSize int) {
	t.Helper()
	path = ledgerPath(t)
	s := openAt(t, path, Options{})
	specs := make([]Spec, 400)
	for i := range specs {
		specs[i] = spec(fmt.Sprintf("job-%04d", i), strings.Repeat("f", 64))
	}
	if _, err := s.Sync(t.Context(), specs); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 400; i += 3 {
		toState(t, s, specs[i].ID, lifecycle.Done)
	}
	must(t, s.Close())
	good = readBytes(t, path)
	return path, good, int(binary.BigEndian.Uint16(good[16:18]))
}

// TestOpenCorruptLedger damages a ledger in a few ways: every Open refuses it
// with ErrCorrupt (or ErrNotLedger when even the header is gone) and leaves
// the files as they were.
func TestOpenCorruptLedger(t *testing.T) {
	_, good, pageSize := manyPages(t)
	pages := len(good) / pageSize
	if pages < 20 {
		t.Fatalf("only %d pages", pages)
	}

	cases := []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"truncated to half", func(b []byte) []byte { return b[:len(b)/2] }},
		{"truncated mid-page", func(b []byte) []byte { return b[:len(b)/2+pageSize/3] }},
		{"garbage page in the middle", func(b []byte) []byte {
			rng := rand.New(rand.NewPCG(1, 2))
			p := pages / 2
			for i := p * pageSize; i < (p+1)*pageSize; i++ {
				b[i] = byte(rng.Uint32())
			}
			return b
		}},
		{"garbage over the first table's root", func(b []byte) []byte {
			for i := pageSize; i < 2*pageSize; i++ {
				b[i] = 0xA5
			}
			return b
		}},
		{"page size zeroed in the header", func(b []byte) []byte {
			b[16], b[17] = 0, 0
			return b
		}},
		{"page size not a power of two", func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[16:18], 3000)
			return b
		}},
		{"header cut short", func(b []byte) []byte { return b[:60] }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "ledger.db")
			must(t, os.WriteFile(path, c.damage(bytes.Clone(good)), 0o644))
			before := snapshot(t, dir)
			for _, opts := range []Options{{}, {ReadOnly: true}, {NoSync: true}} {
				s, err := Open(path, opts)
				if err == nil {
					_, rerr := s.Known(t.Context())
					s.Close()
					t.Fatalf("Open(%+v) accepted a damaged ledger (reading it then: %v)", opts, rerr)
				}
				if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNotLedger) {
					t.Fatalf("Open(%+v) = %v, want ErrCorrupt or ErrNotLedger", opts, err)
				}
				if errors.Is(err, ErrCorrupt) && (!strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "not changed")) {
					t.Fatalf("Open(%+v): message does not name the file and say it was not changed: %v", opts, err)
				}
				sameSnapshot(t, before, snapshot(t, dir))
				t.Logf("Open(%+v): %v", opts, err)
			}
		})
	}
}

// TestReadOnlyBesideOpeningWriter: readers that come while writers create,
// open, write and close the ledger over and over never take a ledger being
// opened or created for an incomplete or damaged one.
func TestReadOnlyBesideOpeningWriter(t *testing.T) {
	path := ledgerPath(t)
	stop := make(chan struct{})
	errs := make(chan error, 4)
	for r := 0; r < 4; r++ {
		go func() {
			n := 0
			for {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				s, err := Open(path, Options{ReadOnly: true})
				if errors.Is(err, ErrNoLedger) || (err != nil && strings.Contains(err.Error(), "older")) {
					continue
				}
				if err != nil {
					errs <- fmt.Errorf("read-only open %d: %w", n, err)
					return
				}
				if _, err := s.Known(t.Context()); err != nil {
					s.Close()
					errs <- fmt.Errorf("read %d: %w", n, err)
					return
				}
				s.Close()
				n++
				// A breath between reads, as any reader takes: with none,
				// four readers starve the writer's checkpoint of the old
				// snapshot (each new one reuses its read mark) for the
				// whole busy timeout, about once in 40 runs.
				time.Sleep(time.Millisecond)
			}
		}()
	}
	for i := 0; i < 40; i++ {
		w, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		specs := make([]Spec, 0, 20)
		for j := 0; j < 20; j++ {
			specs = append(specs, spec(fmt.Sprintf("j%02d-%02d", i, j), "fp"))
		}
		if _, err := w.Sync(t.Context(), specs); err != nil {
			t.Fatal(err)
		}
		must(t, w.Close())
	}
	close(stop)
	for r := 0; r < 4; r++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := jobCount(t, path, Options{ReadOnly: true}); got != 800 {
		t.Fatalf("%d jobs, want 800", got)
	}
}

// A check deferred at Open (the no-op rerun's way) is made by Check: the
// damage Open would have refused is refused there, naming the ledger.
func TestDeferredCheck(t *testing.T) {
	orig, good, pageSize := manyPages(t)
	// Garbage over the last page: far from the tables Open reads.
	bad := bytes.Clone(good)
	for i := len(bad) - pageSize; i < len(bad); i++ {
		bad[i] = 0xA5
	}
	path := filepath.Join(t.TempDir(), "ledger.db")
	must(t, os.WriteFile(path, bad, 0o644))
	if _, err := Open(path, Options{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open checking at once = %v, want ErrCorrupt", err)
	}
	s, err := Open(path, Options{DeferCheck: true})
	if err != nil {
		t.Fatalf("Open deferring its check read the damaged page: %v", err)
	}
	defer s.Close()
	err = s.Check(t.Context())
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Check = %v, want ErrCorrupt naming %s", err, path)
	}
	if strings.Contains(err.Error(), "not changed") {
		t.Fatalf("Check says the file was not changed, but Open marked it held: %v", err)
	}
	// An intact ledger passes.
	g, err := Open(orig, Options{DeferCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.Check(t.Context()); err != nil {
		t.Fatalf("Check of an intact ledger: %v", err)
	}
}
