package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// The ledger is a .db file together with its write-ahead log (<path>-wal) and
// the log's index (<path>-shm). Three rules keep those files honest:
//
//   - A clean Close checkpoints everything into the .db and truncates the
//     -wal, so that the .db alone is the whole ledger.
//   - Read-only opens (status, results, plan) never checkpoint, truncate or
//     delete the -wal: they open the file with mode=ro, and a read-only
//     SQLite connection never checkpoints, not even when it is the last one
//     to close.
//   - The .db says whether a writer holds it (ledger_state.open, set and
//     checkpointed by the writer's Open, cleared by its clean Close). A .db
//     that says so with no -wal beside it was stopped uncleanly and lost its
//     log: it is refused with ErrIncomplete, never read as if nothing had
//     been written since the last checkpoint.

// ErrIncomplete is returned for a ledger whose .db says it was not closed
// cleanly while its -wal is missing (or empty): what was written since the
// last checkpoint is in a -wal that is not there. Nothing is changed.
var ErrIncomplete = errors.New("ledger is incomplete")

// ErrCorrupt is returned for a ledger that SQLite cannot read (a truncated
// file, damaged pages, a broken header). Nothing is changed.
var ErrCorrupt = errors.New("ledger is damaged")

// stateVersion is the first ledger version with the ledger_state table:
// the number of the migration that creates it.
var stateVersion = func() int {
	names, _ := migrations.ReadDir("migrations")
	for i, n := range names { // ReadDir sorts by name, as migrate does
		if strings.HasSuffix(n.Name(), "_ledger_state.sql") {
			return i + 1
		}
	}
	panic("store: no ledger_state migration")
}()

// walHeaderSize is the size of a write-ahead log's header. A -wal of at most
// this many bytes holds no frame, so it holds nothing of the ledger.
const walHeaderSize = 32

// fileInfo is what a stat of a file said. Open takes one of <path>-wal
// before SQLite opens the ledger: opening a WAL database creates an empty
// -wal, which would hide that there was none.
type fileInfo struct {
	exists bool
	size   int64
	mtime  time.Time
}

func statWAL(path string) fileInfo { return statFile(path + "-wal") }

func statFile(path string) fileInfo {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fileInfo{}
	case err != nil:
		// Present but unreadable: let SQLite say what is wrong with it
		// rather than call it missing.
		return fileInfo{exists: true, size: -1}
	}
	return fileInfo{exists: true, size: st.Size(), mtime: st.ModTime()}
}

// hasFrames reports whether a -wal may hold part of the ledger.
func (w fileInfo) hasFrames() bool { return w.exists && (w.size < 0 || w.size > walHeaderSize) }

func (w fileInfo) same(o fileInfo) bool {
	return w.exists == o.exists && w.size == o.size && w.mtime.Equal(o.mtime)
}

// ledgerInfo is what inspect read of a ledger.
type ledgerInfo struct {
	version int
	open    bool // ledger_state.open: a writer holds it or was stopped uncleanly
}

// inspect reads a ledger that exists and carries our stamp, without changing
// any of its files, before the ledger is opened for real: its version (a
// newer one is refused), whether SQLite can read every page of it (else
// ErrCorrupt), and whether its .db says a writer holds it.
//
// With no -wal to read (wal has no frames), the .db is the whole ledger and
// it is read with immutable=1: no -wal, no -shm, no lock is created. With a
// -wal it is read with mode=ro, which reads the -wal but never checkpoints,
// truncates or deletes it (it may create or rebuild the -shm, which is an
// index SQLite rebuilds from the -wal anyway).
func inspect(path string, wal fileInfo, deferCheck bool) (info ledgerInfo, err error) {
	params := []string{"mode=ro"}
	if !wal.hasFrames() {
		params = append(params, "immutable=1")
	}
	db, err := sql.Open("sqlite3", dsn(path, params...))
	if err != nil {
		return info, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)

	var app int
	if err := db.QueryRow("PRAGMA application_id").Scan(&app); err != nil {
		return info, readError(path, err)
	}
	if app != ApplicationID {
		return info, fmt.Errorf("%s: %w (a SQLite database of another program); pass another --ledger path", path, ErrNotLedger)
	}
	if err := db.QueryRow("PRAGMA user_version").Scan(&info.version); err != nil {
		return info, readError(path, err)
	}
	if n := migrationCount(); info.version > n {
		return info, fmt.Errorf("%s: ledger version %d is newer than this comfybatch knows (%d); upgrade comfybatch", path, info.version, n)
	}
	// A ledger about to be migrated is checked now whatever was asked:
	// migrations write everywhere.
	if !deferCheck || info.version < migrationCount() {
		if err := quickCheck(db, path); err != nil {
			return info, err
		}
	}
	if info.version >= stateVersion {
		var open int
		err := db.QueryRow("SELECT open FROM ledger_state WHERE id = 1").Scan(&open)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return info, readError(path, err)
		}
		info.open = open != 0
	}
	return info, nil
}

// quickCheck reads every page of the ledger (PRAGMA quick_check): a damaged
// page is found at Open, before anything is written, instead of by whichever
// query first touches it in the middle of a run.
func quickCheck(db *sql.DB, path string) error {
	return quickCheckContext(context.Background(), db, path, "the file was not changed")
}

// quickCheckContext is quickCheck; said is what the error says of the file.
func quickCheckContext(ctx context.Context, db *sql.DB, path, said string) error {
	rows, err := db.QueryContext(ctx, "PRAGMA quick_check(5)")
	if err != nil {
		return checkError(path, err, said)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return checkError(path, err, said)
		}
		problems = append(problems, p)
	}
	if err := rows.Err(); err != nil {
		return checkError(path, err, said)
	}
	if len(problems) == 1 && problems[0] == "ok" {
		return nil
	}
	why := strings.Join(strings.Fields(strings.Join(problems, "; ")), " ")
	return fmt.Errorf("%s: %w (quick_check: %s); %s", path, ErrCorrupt, why, said)
}

// checkError is readError, saying what it says of the file.
func checkError(path string, err error, said string) error {
	if isCorrupt(err) {
		return fmt.Errorf("%s: %w (%s); %s", path, ErrCorrupt, err, said)
	}
	return fmt.Errorf("read ledger %s: %w", path, err)
}

// checkComplete refuses a ledger whose .db says a writer held it when there
// is no -wal with anything in it beside it.
//
// A writer's Open commits open = 1 to the -wal and checkpoints it into the
// .db with a FULL checkpoint, which leaves the -wal's frames in place; from
// then until its clean Close truncates the -wal (after open = 0 has been
// checkpointed into the .db), a live or killed writer's -wal is never empty.
// So "open = 1 and no frames" means the -wal that held the writes since the
// last checkpoint is gone.
func checkComplete(path string, info ledgerInfo, wal fileInfo) error {
	if !info.open || wal.hasFrames() {
		return nil
	}
	what := "is missing"
	if wal.exists {
		what = "is empty"
	}
	return fmt.Errorf("%w: %s was not closed cleanly and its write-ahead log %s-wal %s: the ledger is the .db together with its -wal (and -shm); copy them together, or put the -wal back. Nothing was changed",
		ErrIncomplete, path, path, what)
}

// isCorrupt reports whether err is SQLite saying the file is damaged or not a
// database at all.
func isCorrupt(err error) bool {
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch se.Code {
		case sqlite3.ErrCorrupt, sqlite3.ErrNotADB, sqlite3.ErrFormat:
			return true
		}
	}
	return false
}

func corruptError(path, why string) error {
	return fmt.Errorf("%s: %w (%s); the file was not changed", path, ErrCorrupt, why)
}

// readError words an error met while inspecting a ledger.
func readError(path string, err error) error {
	if isCorrupt(err) {
		return corruptError(path, err.Error())
	}
	return fmt.Errorf("read ledger %s: %w", path, err)
}

// markOpen records in the .db that a writer holds the ledger: open = 1,
// committed and then checkpointed (FULL: every frame copied into the .db,
// and the -wal left in place, so that it is not empty while the flag says
// open). Until this returns nil the .db may still say closed, so Open fails
// rather than run.
func (s *Store) markOpen() error {
	if _, err := s.wdb.Exec("INSERT INTO ledger_state (id, open) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET open = 1"); err != nil {
		return fmt.Errorf("ledger %s: mark open: %w", s.path, err)
	}
	s.markedOpen = true
	return s.checkpoint("FULL")
}

// markClosed is a clean close: open = 0, then every frame of the -wal into
// the .db and the -wal truncated, so that the .db alone is the whole ledger
// and says it was closed cleanly.
func (s *Store) markClosed() error {
	if _, err := s.wdb.Exec("UPDATE ledger_state SET open = 0 WHERE id = 1"); err != nil {
		return fmt.Errorf("ledger %s: mark closed: %w", s.path, err)
	}
	return s.checkpoint("TRUNCATE")
}

// checkpoint runs a blocking checkpoint on the writer connection (readers
// are waited for up to the busy timeout) and fails unless every frame of the
// -wal made it into the .db.
func (s *Store) checkpoint(mode string) error {
	var frames, done int
	if err := s.wdb.QueryRow("PRAGMA wal_checkpoint("+mode+")").Scan(new(int), &frames, &done); err != nil {
		return fmt.Errorf("ledger %s: checkpoint: %w", s.path, err)
	}
	// The first column, busy, is ignored: busy with every frame copied (the
	// -wal not truncated because a reader still uses it) leaves the .db
	// complete, which is what matters.
	if done != frames {
		return fmt.Errorf("ledger %s: checkpoint: readers kept %d of %d pages of %s-wal out of the .db; the ledger is the .db together with its -wal", s.path, frames-done, frames, s.path)
	}
	return nil
}

// Check reads every page of the ledger, as Open does unless asked to defer
// it (Options.DeferCheck): damage is an ErrCorrupt naming the ledger.
func (s *Store) Check(ctx context.Context) error {
	// Open has marked it held by now: "not changed" would be untrue.
	return quickCheckContext(ctx, s.db, s.path, "no job in it was changed")
}
