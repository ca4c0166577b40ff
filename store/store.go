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

//go:embed migrations/*.sql
var migrations embed.FS

// Options tune Open.
type Options struct {
	// ReadOnly opens without the runner lock and without writing: status and
	// results use it while a run is going on.
	ReadOnly bool
	// Now is the clock for event times; default time.Now.
	Now func() time.Time
	// NoSync turns off fsync (synchronous=OFF). Benchmarks only: it measures
	// what durability costs.
	NoSync bool
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
	fresh, err := checkLedgerFile(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	s := &Store{path: path, lock: f, now: now}
	if err := s.openDBs(fresh, opts.NoSync); err != nil {
		s.closeDBs()
		f.Close()
		return nil, err
	}
	s.writes = make(chan writeReq, 1024)
	s.wg.Add(1)
	go s.writer()
	return s, nil
}

func openReadOnly(path string, now func() time.Time) (*Store, error) {
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
	db, err := sql.Open("sqlite3", dsn(path, "_query_only=1"))
	if err != nil {
		return nil, err
	}
	s := &Store{path: path, db: db, now: now}
	if err := s.checkVersion(); err != nil {
		db.Close()
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
	db, err := sql.Open("sqlite3", dsn(s.path, "_journal_mode=WAL", "_query_only=1"))
	if err != nil {
		return err
	}
	s.db = db
	return s.checkVersion()
}

// initLedger stamps an empty file as a ledger in one rollback-journal
// transaction, so the stamp is in the main file before WAL mode is turned on.
func initLedger(path string) error {
	db, err := sql.Open("sqlite3", dsn(path, "_journal_mode=DELETE"))
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err = db.Exec(fmt.Sprintf("PRAGMA application_id = %d", ApplicationID)); err != nil {
		return fmt.Errorf("create ledger %s: %w", path, err)
	}
	return migrate(db, path)
}

func migrate(db *sql.DB, path string) error {
	names, err := migrations.ReadDir("migrations")
	if err != nil {
		return err
	}
	sort.Slice(names, func(i, j int) bool { return names[i].Name() < names[j].Name() })
	var version int
	if err := db.QueryRow("PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("read ledger version: %w", err)
	}
	if version > len(names) {
		return fmt.Errorf("%s: ledger version %d is newer than this comfybatch knows (%d); upgrade comfybatch", path, version, len(names))
	}
	for i := version; i < len(names); i++ {
		body, err := migrations.ReadFile("migrations/" + names[i].Name())
		if err != nil {
			return err
		}
		tx, err := db.Begin()
		if err != nil {
			return err
		}
		if _, err := tx.Exec(string(body)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate ledger to version %d: %w", i+1, err)
		}
		if _, err := tx.Exec("PRAGMA user_version = " + strconv.Itoa(i+1)); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
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
// database and releases the lock.
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
		// A clean close checkpoints the WAL into the main file.
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
