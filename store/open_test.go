package store

import (
	"bytes"
	"database/sql"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"comfybatch/lifecycle"
)

func TestOpenCreatesAndReopens(t *testing.T) {
	path := ledgerPath(t)
	s := openAt(t, path, Options{})
	if s.Path() != path {
		t.Fatalf("Path() = %q, want %q", s.Path(), path)
	}
	var app, version int
	var mode string
	must(t, s.db.QueryRow("PRAGMA application_id").Scan(&app))
	must(t, s.db.QueryRow("PRAGMA user_version").Scan(&version))
	must(t, s.db.QueryRow("PRAGMA journal_mode").Scan(&mode))
	if app != ApplicationID || version != migrationCount() || version < 1 || mode != "wal" {
		t.Fatalf("application_id %#x user_version %d journal_mode %s; want %#x %d wal", app, version, mode, ApplicationID, migrationCount())
	}
	var syncMode int
	must(t, s.wdb.QueryRow("PRAGMA synchronous").Scan(&syncMode))
	if syncMode != 2 {
		t.Fatalf("durable ledger has synchronous=%d, want 2 (FULL)", syncMode)
	}
	if _, err := s.Sync(t.Context(), []Spec{spec("a", "fp1")}); err != nil {
		t.Fatal(err)
	}
	must(t, s.Close())
	must(t, s.Close()) // a second Close is harmless

	// The stamp is in the main file's header, where checkLedgerFile reads it.
	b, err := os.ReadFile(path)
	must(t, err)
	if !bytes.HasPrefix(b, []byte("SQLite format 3\x00")) ||
		binary.BigEndian.Uint32(b[68:72]) != ApplicationID ||
		int(binary.BigEndian.Uint32(b[60:64])) != migrationCount() {
		t.Fatalf("header: magic %q app %#x version %d", b[:16], b[68:72], b[60:64])
	}

	s2 := openAt(t, path, Options{NoSync: true})
	if j := job(t, s2, "a"); j.State != lifecycle.Pending || j.Fingerprint != "fp1" {
		t.Fatalf("after reopen: %+v", j)
	}
	must(t, s2.wdb.QueryRow("PRAGMA synchronous").Scan(&syncMode))
	if syncMode != 0 {
		t.Fatalf("NoSync ledger has synchronous=%d, want 0", syncMode)
	}
}

func TestOpenOddFileName(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a?b#c%41 d.db")
	s := openAt(t, path, Options{})
	if _, err := s.Sync(t.Context(), []Spec{spec("a", "fp")}); err != nil {
		t.Fatal(err)
	}
	must(t, s.Close())
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("ledger not at its exact name: %v", err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(names) != 1 {
		t.Fatalf("files beside the ledger: %v", names)
	}
	ro := openAt(t, path, Options{ReadOnly: true})
	job(t, ro, "a")
}

func writeForeignSQLite(t *testing.T, path string, extra ...string) {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	must(t, err)
	defer db.Close()
	for _, q := range append(extra, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)", "INSERT INTO notes (body) VALUES ('keep me')") {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func TestOpenRefusesWhatIsNotALedger(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, path string)
	}{
		{"text file", func(t *testing.T, path string) {
			must(t, os.WriteFile(path, []byte("jobs:\n  - id: a\n"), 0o644))
		}},
		{"empty file beside a non-empty wal", func(t *testing.T, path string) {
			must(t, os.WriteFile(path, nil, 0o644))
			must(t, os.WriteFile(path+"-wal", bytes.Repeat([]byte{0x37, 0x7f, 0x06, 0x82}, 1024), 0o644))
		}},
		{"directory", func(t *testing.T, path string) {
			must(t, os.Mkdir(path, 0o755))
		}},
		{"sqlite database of another program", func(t *testing.T, path string) {
			writeForeignSQLite(t, path)
		}},
		{"sqlite database in wal mode with another application_id", func(t *testing.T, path string) {
			writeForeignSQLite(t, path, "PRAGMA journal_mode=WAL", "PRAGMA application_id=1234")
		}},
		{"truncated sqlite header", func(t *testing.T, path string) {
			must(t, os.WriteFile(path, []byte("SQLite format 3\x00\x10\x00"), 0o644))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "ledger.db")
			c.setup(t, path)
			before := snapshot(t, dir)
			for _, opts := range []Options{{}, {ReadOnly: true}, {NoSync: true}} {
				s, err := Open(path, opts)
				if err == nil {
					s.Close()
					t.Fatalf("Open(%+v) accepted it", opts)
				}
				if !errors.Is(err, ErrNotLedger) {
					t.Fatalf("Open(%+v) = %v, want ErrNotLedger", opts, err)
				}
				sameSnapshot(t, before, snapshot(t, dir))
			}
		})
	}
}

func TestOpenRefusesNewerLedger(t *testing.T) {
	path := ledgerPath(t)
	s := openAt(t, path, Options{})
	must(t, s.Close())
	db, err := sql.Open("sqlite3", path)
	must(t, err)
	_, err = db.Exec("PRAGMA user_version = 99")
	must(t, err)
	must(t, db.Close())
	for _, opts := range []Options{{}, {ReadOnly: true}} {
		s, err := Open(path, opts)
		if err == nil {
			s.Close()
			t.Fatalf("Open(%+v) of a newer ledger succeeded", opts)
		}
		if !strings.Contains(err.Error(), "newer") {
			t.Fatalf("Open(%+v) = %v, want a 'newer' error", opts, err)
		}
	}
}

func TestReadOnlyMissingLedger(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ledger.db")
	_, err := Open(path, Options{ReadOnly: true})
	if !errors.Is(err, ErrNoLedger) {
		t.Fatalf("got %v, want ErrNoLedger", err)
	}
	if names, _ := os.ReadDir(dir); len(names) != 0 {
		t.Fatalf("read-only open created %v", names)
	}

	must(t, os.WriteFile(path, nil, 0o644))
	before := snapshot(t, dir)
	if _, err := Open(path, Options{ReadOnly: true}); !errors.Is(err, ErrNoLedger) {
		t.Fatalf("empty file: got %v, want ErrNoLedger", err)
	}
	sameSnapshot(t, before, snapshot(t, dir))
}

func TestReadOnlyBesideWriter(t *testing.T) {
	path := ledgerPath(t)
	w := openAt(t, path, Options{})
	if _, err := w.Sync(t.Context(), []Spec{spec("a", "fp"), spec("b", "fp")}); err != nil {
		t.Fatal(err)
	}
	ro := openAt(t, path, Options{ReadOnly: true})
	if j := job(t, ro, "a"); j.State != lifecycle.Pending {
		t.Fatalf("reader sees %+v", j)
	}
	toState(t, w, "a", lifecycle.Running)
	if j := job(t, ro, "a"); j.State != lifecycle.Running || j.RequestID != "req-a" {
		t.Fatalf("reader sees %+v after the writer moved it", j)
	}
	// A read-only store refuses every write and changes nothing.
	if _, err := ro.Sync(t.Context(), []Spec{spec("c", "fp")}); err == nil {
		t.Fatal("read-only Sync succeeded")
	}
	if err := beginSubmit(t, ro, "b"); err == nil {
		t.Fatal("read-only BeginSubmit succeeded")
	}
	if _, err := ro.Recover(t.Context()); err == nil {
		t.Fatal("read-only Recover succeeded")
	}
	if j := job(t, w, "b"); j.State != lifecycle.Pending {
		t.Fatalf("b changed: %+v", j)
	}
	if _, err := ro.Job(t.Context(), "c"); err == nil {
		t.Fatal("read-only Sync added c")
	}
	must(t, ro.Close())
	// The writer is unaffected by the reader coming and going.
	toState(t, w, "a", lifecycle.Done)
	ro2 := openAt(t, path, Options{ReadOnly: true})
	if j := job(t, ro2, "a"); j.State != lifecycle.Done {
		t.Fatalf("second reader sees %+v", j)
	}
}
