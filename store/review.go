package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"time"

	"comfybatch/lifecycle"
)

// Reviews are what a person said of a job's output: accepted or rejected,
// with a note. They are written while a run may hold the ledger (from the
// view page, from `comfybatch review`), and the ledger's writer lock
// admits one process only. So they go to a journal of their own beside
// the ledger, <ledger>-reviews: a small SQLite file in WAL mode that any
// number of processes write through SQLite's own locks, each commit fsynced
// (synchronous=FULL) before it is acknowledged. A run, which never writes
// the journal, cannot lose what is in it however it dies; it copies the
// journal into the ledger's reviews table (FoldReviews) so that the ledger
// alone carries every review up to its last run. Readers read the journal
// when it is there (it holds every review ever written), else the ledger.
//
// A review belongs to the request whose output was seen: a job submitted
// again (run --redo-rejected, a changed input) has a new request id, and
// no review until someone looks at its new output. The earlier reviews stay.

// Verdict is what a review says.
type Verdict string

const (
	Accepted Verdict = "accepted"
	Rejected Verdict = "rejected"
)

// Review is one verdict on one job's output.
type Review struct {
	Seq       int64   `json:"-"`
	JobID     string  `json:"-"`
	RequestID string  `json:"request_id"`
	Verdict   Verdict `json:"verdict"`
	Note      string  `json:"note"`
	At        string  `json:"at"`
}

// ReviewsPath is the review journal of the ledger at ledger.
func ReviewsPath(ledger string) string { return ledger + "-reviews" }

const reviewsSchema = `CREATE TABLE IF NOT EXISTS reviews (
    seq        INTEGER PRIMARY KEY,
    job_id     TEXT NOT NULL,
    request_id TEXT NOT NULL DEFAULT '',
    verdict    TEXT NOT NULL CHECK (verdict IN ('accepted', 'rejected')),
    note       TEXT NOT NULL DEFAULT '',
    at         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reviews_job ON reviews(job_id, seq);`

// ReviewJournal is an open review journal, for writing.
type ReviewJournal struct {
	db  *sql.DB
	now func() time.Time
}

// OpenReviews opens (creating it when absent) the review journal of the
// ledger at ledger. It takes no lock: a run may hold the ledger meanwhile.
func OpenReviews(ledger string, now func() time.Time) (*ReviewJournal, error) {
	if now == nil {
		now = time.Now
	}
	path := ReviewsPath(ledger)
	db, err := sql.Open("sqlite3", dsn(path, "_journal_mode=WAL", "_synchronous=FULL", "_txlock=immediate"))
	if err != nil {
		return nil, fmt.Errorf("open reviews %s: %w", path, err)
	}
	if _, err := db.Exec(reviewsSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("open reviews %s: %w", path, err)
	}
	return &ReviewJournal{db: db, now: now}, nil
}

// Close closes the journal.
func (j *ReviewJournal) Close() error { return j.db.Close() }

// Put records reviews in one transaction, stamped now; it returns once
// they are on disk.
func (j *ReviewJournal) Put(ctx context.Context, rs ...Review) (err error) {
	defer wrapErr(&err, "reviews: record")
	for _, r := range rs {
		if r.Verdict != Accepted && r.Verdict != Rejected {
			return fmt.Errorf("job %s: verdict %q: want accepted or rejected", r.JobID, r.Verdict)
		}
	}
	tx, err := j.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	at := j.now().UTC().Format("2006-01-02T15:04:05.000Z07:00")
	for _, r := range rs {
		if _, err := tx.ExecContext(ctx, "INSERT INTO reviews (job_id, request_id, verdict, note, at) VALUES (?, ?, ?, ?, ?)",
			r.JobID, r.RequestID, string(r.Verdict), r.Note, at); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Latest returns every job's latest review.
func (j *ReviewJournal) Latest(ctx context.Context) (map[string]Review, error) {
	return latestReviews(ctx, j.db)
}

// ReadReviews returns every job's latest review of the ledger at ledger,
// without writing anything: from its journal when there is one, else from
// the ledger's own table (st, which may be nil when there is no ledger).
func ReadReviews(ctx context.Context, ledger string, st *Store) (map[string]Review, error) {
	db, err := openJournalRO(ledger)
	if err != nil {
		return nil, err
	}
	if db != nil {
		defer db.Close()
		return latestReviews(ctx, db)
	}
	if st == nil {
		return map[string]Review{}, nil
	}
	return latestReviews(ctx, st.db)
}

// openJournalRO opens the review journal read-only; nil when there is none.
func openJournalRO(ledger string) (*sql.DB, error) {
	path := ReviewsPath(ledger)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("reviews: %w", err)
	}
	return sql.Open("sqlite3", dsn(path, "mode=ro", "_query_only=1"))
}

func latestReviews(ctx context.Context, db *sql.DB) (_ map[string]Review, err error) {
	defer wrapErr(&err, "reviews: read")
	rows, err := db.QueryContext(ctx, `SELECT seq, job_id, request_id, verdict, note, at FROM reviews
		WHERE seq IN (SELECT max(seq) FROM reviews GROUP BY job_id)`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]Review{}
	for rows.Next() {
		var r Review
		if err := rows.Scan(&r.Seq, &r.JobID, &r.RequestID, &r.Verdict, &r.Note, &r.At); err != nil {
			return nil, err
		}
		out[r.JobID] = r
	}
	return out, rows.Err()
}

// Current is the review of job j's present output: the latest review when
// it was made of j's current request, else none.
func Current(reviews map[string]Review, j Job) (Review, bool) {
	r, ok := reviews[j.ID]
	if !ok || r.RequestID != j.RequestID {
		return Review{}, false
	}
	return r, true
}

// FoldReviews copies into the ledger the journal's reviews it does not
// have yet, in one write: from then on the ledger alone carries them.
// Without a journal there is nothing to copy.
func (s *Store) FoldReviews(ctx context.Context) (n int, err error) {
	defer wrapErr(&err, "ledger: copy reviews from %s", ReviewsPath(s.path))
	path := ReviewsPath(s.path)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	db, err := sql.Open("sqlite3", dsn(path, "mode=ro", "_query_only=1"))
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var have int64
	if err := s.db.QueryRowContext(ctx, "SELECT coalesce(max(seq), 0) FROM reviews").Scan(&have); err != nil {
		return 0, err
	}
	rows, err := db.QueryContext(ctx, "SELECT seq, job_id, request_id, verdict, note, at FROM reviews WHERE seq > ? ORDER BY seq", have)
	if err != nil {
		return 0, err
	}
	var rs []Review
	for rows.Next() {
		var r Review
		if err := rows.Scan(&r.Seq, &r.JobID, &r.RequestID, &r.Verdict, &r.Note, &r.At); err != nil {
			rows.Close()
			return 0, err
		}
		rs = append(rs, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(rs) == 0 {
		return 0, err
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		for _, r := range rs {
			if _, err := tx.Exec(`INSERT INTO reviews (seq, job_id, request_id, verdict, note, at) VALUES (?, ?, ?, ?, ?, ?)
				ON CONFLICT (seq) DO NOTHING`, r.Seq, r.JobID, r.RequestID, string(r.Verdict), r.Note, r.At); err != nil {
				return err
			}
		}
		return nil
	})
	return len(rs), err
}

// Redo sends a done job back to pending to be submitted again, because its
// output was rejected: its files, already moved aside by the caller
// (Keeper.Archive), are recorded under the submission they belong to, like
// those of a changed job, and its request id stays in the submissions
// table. Nothing is paid until the run submits it.
func (s *Store) Redo(ctx context.Context, id string, archived []File, why string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		var st lifecycle.State
		if err := tx.QueryRow("SELECT state FROM jobs WHERE id = ?", id).Scan(&st); err != nil {
			return err
		}
		if st != lifecycle.Done {
			return fmt.Errorf("%w: it is %s; only a done job is submitted again for a rejected output", ErrConflict, st)
		}
		if err := keepHistory(tx, id, archived); err != nil {
			return err
		}
		if _, err := s.apply(tx, id, lifecycle.Step{To: lifecycle.Pending, Detail: why}, true); err != nil {
			return err
		}
		if _, err := tx.Exec(`UPDATE jobs SET remote_status = '', queue_position = NULL, request_id = NULL, cost_usd = NULL,
			error = '', outputs = '[]', submitted_at = NULL, finished_at = NULL WHERE id = ?`, id); err != nil {
			return err
		}
		_, err := tx.Exec("DELETE FROM files WHERE job_id = ?", id)
		return err
	})
	if err != nil {
		return fmt.Errorf("ledger: redo job %s: %w", id, err)
	}
	return nil
}
