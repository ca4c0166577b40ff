// Package store owns the ledger: the SQLite file that records every job of a
// manifest, every submission and request id, every state transition and every
// downloaded file, so that a run stopped at any moment resumes without paying
// twice. It also owns the rules that keep the ledger safe: one runner at a time
// (a kernel lock), a file that is not a ledger is never touched, and every
// write from every worker goes through one writer that commits in groups.
package store

import (
	"database/sql"
	"embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "github.com/mattn/go-sqlite3" // the ledger's database driver (cgo SQLite)
)

// ApplicationID marks a SQLite file as a comfybatch ledger ("CBLG").
const ApplicationID = 0x43424C47

// ErrNotLedger is returned for a file that exists but is not a comfybatch
// ledger; such a file is never modified.
var ErrNotLedger = errors.New("not a comfybatch ledger")

// ErrLocked is returned when another comfybatch holds the ledger.
var ErrLocked = errors.New("ledger is in use by another comfybatch")

// ErrNoLedger is returned by a read-only open of a ledger that does not exist.
var ErrNoLedger = errors.New("no ledger yet")

// ErrConflict is returned when a transition is asked of a job that is not in
// one of the states it may leave from. It signals a bug or a race with a
// manifest change, never a lost write.
var ErrConflict = errors.New("job is not in the expected state")

// ErrDuplicateRequest is returned for a request id that another submission
// already holds, in a write or in a ledger being upgraded. A request id
// belongs to one submission of one job: a second holder is a bug, of the
// API or of comfybatch, and which job's result is which cannot be told.
var ErrDuplicateRequest = errors.New("request id already held by another submission")

//go:embed migrations/*.sql
var migrations embed.FS

// Options tune Open.
type Options struct {
	// ReadOnly opens without the runner lock and without writing: status and
	// results use it while a run is going on. It never checkpoints,
	// truncates or deletes the ledger's -wal, even after an unclean stop.
	ReadOnly bool
	// Now is the clock for event times; default time.Now.
	Now func() time.Time
	// NoSync turns off fsync (synchronous=OFF). Benchmarks only: it measures
	// what durability costs.
	NoSync bool
	// DeferCheck leaves the reading of every page (PRAGMA quick_check, which
	// costs about half a second on a 100,000-job ledger) to a later Check,
	// for a caller that may only read a few tables and leave; one that goes
	// on to work must call Check before it writes. Open writes only its
	// one-row mark that a writer holds the ledger before then. A ledger that
	// needs migrating is checked at Open all the same.
	DeferCheck bool
}

// Store is an open ledger.
type Store struct {
	path   string
	db     *sql.DB // readers; WAL lets them run beside the writer
	wdb    *sql.DB // the single writer connection
	lock   *os.File
	now    func() time.Time
	writes chan writeReq
	wg     sync.WaitGroup
	wmu    sync.RWMutex // held shared while sending on writes, exclusively to close it
	closed bool         // guarded by wmu

	closeOnce sync.Once
	closeErr  error

	// markedOpen: the writer set ledger_state.open = 1; closing clears it.
	markedOpen bool

	stats writerStats // counted by the writer (writer.go)
}

// Path is the ledger's file name.
func (s *Store) Path() string { return s.path }

// Open opens the ledger at path, creating it when absent. Unless ReadOnly, it
// takes an exclusive kernel lock on the file (released by the kernel if the
// process dies) and fails with ErrLocked when another process holds it.
func Open(path string, opts Options) (*Store, error) {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	if opts.ReadOnly {
		return openReadOnly(path, now)
	}
	// A directory cannot even be opened for writing; refuse it, and anything
	// else that is not a regular file, as what it is: not a ledger.
	if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w (not a regular file)", path, ErrNotLedger)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		if errors.Is(err, ErrLocked) {
			return nil, fmt.Errorf("%s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("lock ledger %s: %w", path, err)
	}
	// Under the lock no other writer can create, fill or remove the -wal:
	// what it is now is what the last writer left.
	wal := statWAL(path)
	fresh, err := checkLedgerFile(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fresh {
		info, err := inspect(path, wal, opts.DeferCheck)
		if err == nil {
			err = checkComplete(path, info, wal)
		}
		if err != nil {
			f.Close()
			return nil, err
		}
	}
	s := &Store{path: path, lock: f, now: now}
	if err := s.openDBs(fresh, opts.NoSync); err != nil {
		s.closeDBs()
		f.Close()
		if isCorrupt(err) {
			// Damage inspect did not see (it reads every page first):
			// the file may have been written to by then.
			err = fmt.Errorf("%s: %w (%v)", path, ErrCorrupt, err)
		}
		return nil, err
	}
	s.writes = make(chan writeReq, 1024)
	s.wg.Add(1)
	go s.writer()
	return s, nil
}

// openReadOnly opens without the lock, beside a run or after one. It never
// checkpoints, truncates or deletes the -wal: the connection is opened with
// mode=ro, and a read-only SQLite connection does not checkpoint, not even
// when it is the last to close.
//
// With no -wal to read, the .db is read alone and without locks (inspect);
// the only writes a .db can then get are a new ledger's first commit and a
// checkpoint by a writer that has just opened it. Either changes the .db or
// the -wal under the reader, so a refusal is retried when they changed
// while it was reading. Damage and an incomplete ledger are retried even
// when they seem not to have changed: a checkpoint rewrites pages in place
// without changing the size, and file times move in ticks of a few
// milliseconds, so they are said only when they persist (about 200ms).
func openReadOnly(path string, now func() time.Time) (*Store, error) {
	for attempt := 1; ; attempt++ {
		db, wal := statFile(path), statWAL(path)
		s, err := tryOpenReadOnly(path, now, wal)
		if err == nil || errors.Is(err, ErrNoLedger) || attempt == 5 {
			return s, err
		}
		fake := errors.Is(err, ErrCorrupt) || errors.Is(err, ErrIncomplete)
		if !fake && db.same(statFile(path)) && wal.same(statWAL(path)) {
			return s, err
		}
		time.Sleep(time.Duration(attempt) * 20 * time.Millisecond)
	}
}

func tryOpenReadOnly(path string, now func() time.Time, wal fileInfo) (*Store, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", path, ErrNoLedger)
	}
	if err != nil {
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	fresh, err := checkLedgerFile(f, path)
	f.Close()
	if err != nil {
		return nil, err
	}
	if fresh {
		return nil, fmt.Errorf("%s: %w", path, ErrNoLedger)
	}
	info, err := inspect(path, wal, false)
	if err != nil {
		return nil, err
	}
	if err := checkComplete(path, info, wal); err != nil {
		return nil, err
	}
	if n := migrationCount(); info.version < n {
		// Said here, before SQLite opens it for reading and creates an
		// empty -wal and -shm beside it.
		return nil, fmt.Errorf("%s: ledger version %d is older than this comfybatch's (%d); run `comfybatch run` once to upgrade it", path, info.version, n)
	}
	db, err := sql.Open("sqlite3", dsn(path, "mode=ro", "_query_only=1"))
	if err != nil {
		return nil, err
	}
	s := &Store{path: path, db: db, now: now}
	if err := s.checkVersion(); err != nil {
		db.Close()
		if isCorrupt(err) {
			err = fmt.Errorf("%s: %w (%v); the file was not changed", path, ErrCorrupt, err)
		}
		return nil, err
	}
	return s, nil
}

// checkLedgerFile decides, from the bytes alone and before SQLite touches the
// file, whether path is a ledger (fresh=false), an empty file that may become
// one (fresh=true), or something else (ErrNotLedger). Reading the header
// first is what guarantees that a foreign file is never modified: opening it
// through SQLite in WAL mode would already rewrite it.
func checkLedgerFile(f *os.File, path string) (fresh bool, err error) {
	st, err := f.Stat()
	if err != nil {
		return false, err
	}
	if !st.Mode().IsRegular() {
		return false, fmt.Errorf("%s: %w (not a regular file)", path, ErrNotLedger)
	}
	if st.Size() == 0 {
		// A ledger's first commit is made in rollback-journal mode, so it lands
		// in the main file: an empty main file beside a non-empty WAL was
		// never ours.
		if wal, err := os.Stat(path + "-wal"); err == nil && wal.Size() > 0 {
			return false, fmt.Errorf("%s: %w (empty file beside a write-ahead log)", path, ErrNotLedger)
		}
		return true, nil
	}
	var hdr [100]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	if string(hdr[:16]) != "SQLite format 3\x00" {
		return false, fmt.Errorf("%s: %w (not a SQLite file); pass another --ledger path", path, ErrNotLedger)
	}
	if st.Size() < int64(len(hdr)) {
		return false, fmt.Errorf("%s: %w (a SQLite header cut short: %d bytes); pass another --ledger path", path, ErrNotLedger, st.Size())
	}
	if id := binary.BigEndian.Uint32(hdr[68:72]); id != ApplicationID {
		return false, fmt.Errorf("%s: %w (a SQLite database of another program); pass another --ledger path", path, ErrNotLedger)
	}
	return false, nil
}

func dsn(path string, extra ...string) string {
	q := []string{"_busy_timeout=10000", "_foreign_keys=on"}
	q = append(q, extra...)
	return "file:" + escapePath(path) + "?" + strings.Join(q, "&")
}

// escapePath keeps a file name with '?' or '#' from being read as URI parts.
func escapePath(p string) string {
	r := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")
	return r.Replace(p)
}

func (s *Store) openDBs(fresh, noSync bool) error {
	if fresh {
		if err := initLedger(s.path); err != nil {
			return err
		}
	}
	sync := "FULL"
	if noSync {
		sync = "OFF"
	}
	// The writer runs the same few statements thousands of times a second:
	// the driver keeps them prepared instead of compiling each one each time.
	wdb, err := sql.Open("sqlite3", dsn(s.path, "_journal_mode=WAL", "_synchronous="+sync, "_txlock=immediate", "_stmt_cache_size=64"))
	if err != nil {
		return err
	}
	wdb.SetMaxOpenConns(1)
	s.wdb = wdb
	// The writer gives every write of a group its own savepoint, and each
	// savepoint's journal is a temporary file unless temp_store says memory:
	// that alone cost a third of the ledger's throughput. (One connection,
	// never recycled, so setting it once holds.)
	if _, err := wdb.Exec("PRAGMA temp_store = MEMORY"); err != nil {
		return err
	}
	if err := migrate(wdb, s.path); err != nil {
		return err
	}
	if err := s.markOpen(); err != nil {
		return err
	}
	db, err := sql.Open("sqlite3", dsn(s.path, "_journal_mode=WAL", "_query_only=1"))
	if err != nil {
		return err
	}
	s.db = db
	return s.checkVersion()
}

// initLedger stamps an empty file as a ledger and creates every table in one
// rollback-journal transaction, so the stamp is in the main file before WAL
// mode is turned on, and a reader beside it sees either an empty file (no
// ledger yet) or a whole ledger of the latest version, never one half made.
func initLedger(path string) error {
	db, err := sql.Open("sqlite3", dsn(path, "_journal_mode=DELETE"))
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	tx, err := db.Begin()
	if err != nil {
		return fmt.Errorf("create ledger %s: %w", path, err)
	}
	if _, err = tx.Exec(fmt.Sprintf("PRAGMA application_id = %d", ApplicationID)); err != nil {
		tx.Rollback()
		return fmt.Errorf("create ledger %s: %w", path, err)
	}
	for i := 0; i < migrationCount(); i++ {
		if err := applyMigration(tx, i); err != nil {
			tx.Rollback()
			return fmt.Errorf("create ledger %s: %w", path, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create ledger %s: %w", path, err)
	}
	return nil
}

func migrate(db *sql.DB, path string) error {
	var version int
	if err := db.QueryRow("PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("read ledger version: %w", err)
	}
	n := migrationCount()
	if version > n {
		return fmt.Errorf("%s: ledger version %d is newer than this comfybatch knows (%d); upgrade comfybatch", path, version, n)
	}
	for i := version; i < n; i++ {
		tx, err := db.Begin()
		if err != nil {
			return err
		}
		if err := applyMigration(tx, i); err != nil {
			tx.Rollback()
			if errors.Is(err, ErrDuplicateRequest) {
				err = fmt.Errorf("%s: %w", path, err)
			}
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}

// applyMigration runs migration i (0-based, in file name order) and sets the
// ledger's version to i+1, inside tx.
func applyMigration(tx *sql.Tx, i int) error {
	names, err := migrations.ReadDir("migrations")
	if err != nil {
		return err
	}
	sort.Slice(names, func(a, b int) bool { return names[a].Name() < names[b].Name() })
	body, err := migrations.ReadFile("migrations/" + names[i].Name())
	if err != nil {
		return err
	}
	if check := migrationChecks[names[i].Name()]; check != nil {
		if err := check(tx); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(string(body)); err != nil {
		return fmt.Errorf("migrate ledger to version %d: %w", i+1, err)
	}
	_, err = tx.Exec("PRAGMA user_version = " + strconv.Itoa(i+1))
	return err
}

// migrationChecks run before the migration they name: they refuse, with
// a sentence a person can act on, a ledger the migration would fail on.
var migrationChecks = map[string]func(*sql.Tx) error{
	"0005_unique_request_ids.sql": checkRequestIDs,
}

// checkRequestIDs refuses a ledger in which two submissions hold the same
// request id, naming them. Nothing is rewritten: which job a request
// belongs to cannot be told, and no request id is ever forgotten.
func checkRequestIDs(tx *sql.Tx) error {
	var req, holders string
	err := tx.QueryRow(`SELECT request_id, group_concat(holder, ' and ') FROM (
		SELECT request_id, 'job ' || job_id || ' (attempt ' || attempt || ')' AS holder FROM submissions WHERE request_id IS NOT NULL
		UNION
		SELECT j.request_id, 'job ' || j.id FROM jobs j WHERE j.request_id IS NOT NULL
			AND NOT EXISTS (SELECT 1 FROM submissions x WHERE x.job_id = j.id AND x.request_id = j.request_id))
		GROUP BY request_id HAVING count(*) > 1 ORDER BY request_id LIMIT 1`).Scan(&req, &holders)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check request ids: %w", err)
	}
	return fmt.Errorf("%w: request id %s is held by %s, so which result is whose cannot be told "+
		"(an older comfybatch's --fake gave out the same request ids in every process); "+
		"this comfybatch does not open the ledger: move it aside, or delete it if it holds only --fake results, and run again", ErrDuplicateRequest, req, holders)
}

func (s *Store) checkVersion() error {
	var version, app int
	if err := s.db.QueryRow("PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("read ledger %s: %w", s.path, err)
	}
	if err := s.db.QueryRow("PRAGMA application_id").Scan(&app); err != nil {
		return err
	}
	if app != ApplicationID {
		return fmt.Errorf("%s: %w", s.path, ErrNotLedger)
	}
	if n := migrationCount(); version != n {
		if version > n {
			return fmt.Errorf("%s: ledger version %d is newer than this comfybatch knows (%d); upgrade comfybatch", s.path, version, n)
		}
		if s.wdb == nil {
			return fmt.Errorf("%s: ledger version %d is older than this comfybatch's (%d); run `comfybatch run` once to upgrade it", s.path, version, n)
		}
	}
	return nil
}

func migrationCount() int {
	names, _ := migrations.ReadDir("migrations")
	return len(names)
}

// Close stops the writer after the writes already queued, then closes the
// database and releases the lock. A writer's Close is a clean close: it
// records in the ledger that it was closed and checkpoints every write into
// the .db, which then is the whole ledger on its own.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.writes != nil {
			s.wmu.Lock()
			s.closed = true
			close(s.writes)
			s.wmu.Unlock()
			s.wg.Wait()
		}
		s.closeErr = s.closeDBs()
		if s.lock != nil {
			s.lock.Close() // closing the descriptor releases the flock
		}
	})
	return s.closeErr
}

func (s *Store) closeDBs() error {
	var errs []error
	if s.db != nil {
		errs = append(errs, s.db.Close())
	}
	if s.wdb != nil {
		if s.markedOpen {
			// Our readers are closed: only other processes' readers can
			// hold the checkpoint up.
			errs = append(errs, s.markClosed())
		}
		errs = append(errs, s.wdb.Close())
	}
	return errors.Join(errs...)
}

// stamp renders times the same way everywhere: RFC 3339 in UTC with
// milliseconds, which sorts as text.
func (s *Store) stamp() string {
	return s.now().UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// wrapErr prefixes a failed read with what it was reading, so that an error
// from deep in SQLite says which operation and which job it stopped.
func wrapErr(err *error, format string, args ...any) {
	if *err != nil {
		*err = fmt.Errorf(format+": %w", append(args, *err)...)
	}
}
