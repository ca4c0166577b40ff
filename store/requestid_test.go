package store

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"

	"comfybatch/lifecycle"
)

// TestRequestIDHeldByAnotherJob: a request id saved for one job is refused
// for another, and for a later attempt of the same job, with an error
// naming both jobs; the refused job stays submitting, its event log and
// the holder untouched.
func TestRequestIDHeldByAnotherJob(t *testing.T) {
	s := newStore(t)
	if _, err := s.Sync(t.Context(), []Spec{spec("a", "fp-a"), spec("b", "fp-b")}); err != nil {
		t.Fatal(err)
	}
	must(t, beginSubmit(t, s, "a"))
	must(t, submitted(t, s, "a", "req-1"))
	must(t, beginSubmit(t, s, "b"))
	err := submitted(t, s, "b", "req-1")
	if !errors.Is(err, ErrDuplicateRequest) || !strings.Contains(err.Error(), "job b") || !strings.Contains(err.Error(), "job a (attempt 1)") {
		t.Fatalf("b given a's request id: %v; want ErrDuplicateRequest naming jobs a and b", err)
	}
	if j := job(t, s, "b"); j.State != lifecycle.Submitting || j.RequestID != "" {
		t.Errorf("b after the refusal: %s with request %q; want submitting, no request id", j.State, j.RequestID)
	}
	if j := job(t, s, "a"); j.State != lifecycle.Queued || j.RequestID != "req-1" {
		t.Errorf("a after the refusal: %s with request %q", j.State, j.RequestID)
	}
	must(t, submitted(t, s, "b", "req-2")) // its own id is saved

	// The same job, submitted again (a failed attempt retried), is no
	// more entitled to an id it already had.
	must(t, failed(t, s, "a", "failed", "boom", nil))
	must(t, beginSubmit(t, s, "a"))
	if err := submitted(t, s, "a", "req-1"); !errors.Is(err, ErrDuplicateRequest) {
		t.Errorf("attempt 2 given attempt 1's request id: %v", err)
	}

	// The constraint holds below Apply too.
	_, err = s.wdb.Exec("UPDATE jobs SET request_id = 'req-2' WHERE id = 'a'")
	if err == nil || !strings.Contains(err.Error(), "UNIQUE") {
		t.Errorf("jobs.request_id duplicated by hand: %v, want a UNIQUE constraint failure", err)
	}
}

// writeV4LedgerWithDuplicate builds a ledger as comfybatch before request
// ids were unique (version 4), in which jobs x and y hold the same request
// id, as --fake left them when every process gave out the same ids.
func writeV4LedgerWithDuplicate(t *testing.T, path string, dup bool) {
	t.Helper()
	db, err := sql.Open("sqlite3", dsn(path, "_journal_mode=DELETE"))
	must(t, err)
	db.SetMaxOpenConns(1)
	tx, err := db.Begin()
	must(t, err)
	_, err = tx.Exec(fmt.Sprintf("PRAGMA application_id = %d", ApplicationID))
	must(t, err)
	for i := range 4 {
		must(t, applyMigration(tx, i))
	}
	yReq := "req-y"
	if dup {
		yReq = "req-1"
	}
	for _, q := range []string{
		`INSERT INTO jobs (id, model, input, fingerprint, state, request_id, attempts, created_at, updated_at) VALUES ('x', 'm', '{}', 'fx', 'queued', 'req-1', 1, 't', 't')`,
		`INSERT INTO jobs (id, model, input, fingerprint, state, request_id, attempts, created_at, updated_at) VALUES ('y', 'm', '{}', 'fy', 'queued', '` + yReq + `', 1, 't', 't')`,
		`INSERT INTO submissions (job_id, attempt, fingerprint, request_id, started_at) VALUES ('x', 1, 'fx', 'req-1', 't')`,
		`INSERT INTO submissions (job_id, attempt, fingerprint, request_id, started_at) VALUES ('y', 1, 'fy', '` + yReq + `', 't')`,
	} {
		if _, err := tx.Exec(q); err != nil {
			t.Fatalf("%.60s: %v", q, err)
		}
	}
	must(t, tx.Commit())
	_, err = db.Exec("PRAGMA journal_mode = WAL")
	must(t, err)
	must(t, db.Close())
}

// TestUpgradeRefusesDuplicateRequestIDs: an older ledger that already holds
// a request id twice is not upgraded, and says which jobs hold it and what
// to do; it is left as it was. One without a duplicate upgrades.
func TestUpgradeRefusesDuplicateRequestIDs(t *testing.T) {
	path := ledgerPath(t)
	writeV4LedgerWithDuplicate(t, path, true)
	_, err := Open(path, Options{})
	if !errors.Is(err, ErrDuplicateRequest) {
		t.Fatalf("Open of a ledger holding req-1 twice: %v, want ErrDuplicateRequest", err)
	}
	for _, want := range []string{path, "req-1", "job x (attempt 1) and job y (attempt 1)", "move it aside"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if v := headerVersion(t, path); v != 4 {
		t.Errorf("the refused ledger is at version %d, want 4 (left as it was)", v)
	}

	path = ledgerPath(t)
	writeV4LedgerWithDuplicate(t, path, false)
	s := openAt(t, path, Options{})
	if j := job(t, s, "y"); j.RequestID != "req-y" {
		t.Errorf("after the upgrade: %+v", j)
	}
}
