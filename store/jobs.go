package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"comfybatch/lifecycle"
)

// Job is a job's current record.
type Job struct {
	ID            string
	Model         string
	Input         json.RawMessage
	Fingerprint   string
	State         lifecycle.State
	RemoteStatus  string
	QueuePosition *int
	RequestID     string
	Attempts      int
	CostUSD       *float64
	Error         string
	Outputs       []string
	SubmittedAt   string
	FinishedAt    string
	CreatedAt     string
	UpdatedAt     string
}

// File is one downloaded and verified output of a job.
type File struct {
	N      int    `json:"-"`
	URL    string `json:"-"`
	Path   string `json:"path"` // relative to the output folder
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// Event is one recorded transition.
type Event struct {
	Seq    int64           `json:"-"`
	JobID  string          `json:"-"`
	At     string          `json:"at"`
	From   lifecycle.State `json:"from"`
	To     lifecycle.State `json:"to"`
	Detail string          `json:"detail,omitempty"`
}

// Apply records a decided transition of one job, with its event, in one
// transaction, only from a state lifecycle.Edges allows (ErrConflict
// otherwise). files are saved in the same write: the last file of a job and
// its move to done land together. An event is written when the state
// changes or the step says something; repeated polls that change nothing
// write nothing but the queue position.
//
// The write is not abandoned once queued, even when ctx is cancelled: a
// request id that RunComfy answered must land. A ctx already done before
// the write is queued refuses it.
func (s *Store) Apply(ctx context.Context, id string, step lifecycle.Step, files ...File) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := s.apply(tx, id, step, false); err != nil {
			return err
		}
		for _, f := range files {
			if err := saveFile(tx, id, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ledger: job %s → %s: %w", id, step.To, err)
	}
	return nil
}

// apply is the one place a job's state changes. What it writes besides the
// state depends on the edge: the columns of a job's current submission are
// cleared when a new one begins, a request id is saved when it arrives, a
// result when it ends. bySync says the move comes from bringing the ledger
// in line with a changed manifest: only that moves a job whose state a new
// input may replace (lifecycle.State.Replaceable), and only that takes the
// edges marked BySync — an answer from RunComfy never resets or reuses a
// job's result.
func (s *Store) apply(tx *sql.Tx, id string, st lifecycle.Step, bySync bool) (lifecycle.State, error) {
	var cur lifecycle.State
	var remote string
	if err := tx.QueryRow("SELECT state, remote_status FROM jobs WHERE id = ?", id).Scan(&cur, &remote); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return "", errors.New("not in the ledger")
		}
		return "", err
	}
	switch {
	case !lifecycle.Allowed(cur, st.To):
		return cur, fmt.Errorf("%w: is %s, and %s → %s is not a transition", ErrConflict, cur, cur, st.To)
	case bySync && !cur.Replaceable():
		return cur, fmt.Errorf("%w: it is %s, which a changed manifest does not replace", ErrConflict, cur)
	case !bySync && lifecycle.BySync(cur, st.To):
		return cur, fmt.Errorf("%w: is %s, and %s → %s is taken only when the manifest changes", ErrConflict, cur, cur, st.To)
	}
	now := s.stamp()
	var sets string
	var args []any
	detail := st.Detail
	switch {
	case st.To == lifecycle.Submitting:
		var attempt int
		var fp string
		if err := tx.QueryRow("SELECT attempts + 1, fingerprint FROM jobs WHERE id = ?", id).Scan(&attempt, &fp); err != nil {
			return cur, err
		}
		if detail == "" {
			detail = fmt.Sprintf("attempt %d", attempt)
		}
		sets = "attempts = ?, request_id = NULL, remote_status = '', queue_position = NULL, error = '', cost_usd = NULL, outputs = '[]', submitted_at = NULL, finished_at = NULL"
		args = []any{attempt}
		if _, err := tx.Exec("DELETE FROM files WHERE job_id = ?", id); err != nil {
			return cur, err
		}
		if _, err := tx.Exec("INSERT INTO submissions (job_id, attempt, fingerprint, started_at) VALUES (?, ?, ?, ?)",
			id, attempt, fp, now); err != nil {
			return cur, err
		}
	case cur == lifecycle.Submitting && st.To == lifecycle.Queued:
		if st.RequestID == "" {
			return cur, errors.New("a submitted job needs its request id")
		}
		var holder string
		var attempt int
		err := tx.QueryRow("SELECT job_id, attempt FROM submissions WHERE request_id = ? LIMIT 1", st.RequestID).Scan(&holder, &attempt)
		if err == nil {
			return cur, fmt.Errorf("%w: request id %s is already held by job %s (attempt %d); the API or comfybatch has a bug, and this job's submission is left unsaved (the next run calls it unknown)",
				ErrDuplicateRequest, st.RequestID, holder, attempt)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return cur, err
		}
		sets, args = "request_id = ?, submitted_at = ?", []any{st.RequestID, now}
		if err := setSubmission(tx, id, "request_id = ?", st.RequestID); err != nil {
			return cur, err
		}
	case cur == lifecycle.Submitting:
		sets, args = "error = ?", []any{st.Error}
		if st.To == lifecycle.Failed {
			sets, args = "error = ?, finished_at = ?", []any{st.Error, now}
		}
		if err := setSubmission(tx, id, "outcome = ?", string(st.To)); err != nil {
			return cur, err
		}
	case st.To == lifecycle.Completed && len(st.Outputs) == 0 && cur != lifecycle.Done:
		return cur, errors.New("a completed job needs its outputs")
	case st.To == lifecycle.Completed && cur.InFlight():
		out, err := json.Marshal(st.Outputs)
		if err != nil {
			return cur, err
		}
		sets = "remote_status = ?, queue_position = NULL, outputs = ?, cost_usd = ?, finished_at = ?, error = ''"
		args = []any{st.Remote, string(out), nullFloat(st.Cost), now}
		if err := dropFilesFrom(tx, id, len(st.Outputs)); err != nil {
			return cur, err
		}
		if err := setSubmission(tx, id, "outcome = ?, cost_usd = ?, outputs = ?", string(lifecycle.Completed), nullFloat(st.Cost), string(out)); err != nil {
			return cur, err
		}
	case st.To == lifecycle.Completed && cur == lifecycle.Completed:
		out, err := json.Marshal(st.Outputs)
		if err != nil {
			return cur, err
		}
		sets, args = "outputs = ?", []any{string(out)}
		if err := dropFilesFrom(tx, id, len(st.Outputs)); err != nil {
			return cur, err
		}
	case (st.To == lifecycle.Failed || st.To == lifecycle.Cancelled) && cur.InFlight():
		// coalesce: a cost reported earlier is kept when this answer has none.
		sets = "remote_status = ?, queue_position = NULL, error = ?, cost_usd = coalesce(?, cost_usd), finished_at = ?"
		args = []any{cmp.Or(st.Remote, remote), st.Error, nullFloat(st.Cost), now}
		if err := setSubmission(tx, id, "outcome = ?, cost_usd = coalesce(?, cost_usd)", string(st.To), nullFloat(st.Cost)); err != nil {
			return cur, err
		}
	case st.To.InFlight() && cur.InFlight():
		if st.Remote != "" && st.Remote != remote && detail == "" {
			detail = "remote status " + st.Remote
		}
		sets, args = "remote_status = ?, queue_position = ?", []any{cmp.Or(st.Remote, remote), nullInt(st.QueuePosition)}
	}
	q := "UPDATE jobs SET state = ?, updated_at = ?"
	if sets != "" {
		q += ", " + sets
	}
	q += " WHERE id = ?"
	all := append([]any{string(st.To), now}, args...)
	all = append(all, id)
	if _, err := tx.Exec(q, all...); err != nil {
		return cur, err
	}
	if cur != st.To || detail != "" {
		if _, err := tx.Exec("INSERT INTO events (job_id, at, from_state, to_state, detail) VALUES (?, ?, ?, ?, ?)",
			id, now, string(cur), string(st.To), detail); err != nil {
			return cur, err
		}
	}
	return cur, nil
}

// Recover applies lifecycle.Recover to every job left in submitting by a
// process that died mid-POST.
func (s *Store) Recover(ctx context.Context) (n int, err error) {
	err = s.write(ctx, func(tx *sql.Tx) error {
		rows, err := tx.Query("SELECT id FROM jobs WHERE state = ?", string(lifecycle.Submitting))
		if err != nil {
			return err
		}
		var ids []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		rows.Close()
		for _, id := range ids {
			if _, err := s.apply(tx, id, lifecycle.Recover(), false); err != nil {
				return fmt.Errorf("job %s: %w", id, err)
			}
		}
		n = len(ids)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("ledger: recover jobs cut off mid-submission: %w", err)
	}
	return n, nil
}

// setSubmission updates the job's current submission: the one whose
// request id the job holds (an earlier one, when its input changed back to
// that submission's), else its latest attempt.
func setSubmission(tx *sql.Tx, id, sets string, args ...any) error {
	args = append(args, id)
	_, err := tx.Exec("UPDATE submissions SET "+sets+` WHERE job_id = ? AND attempt = (
		SELECT coalesce((SELECT max(x.attempt) FROM submissions x WHERE x.job_id = j.id AND x.request_id = j.request_id), j.attempts)
		FROM jobs j WHERE j.id = submissions.job_id)`, args...)
	return err
}

// dropFilesFrom deletes a job's file records numbered n and up: when a job's
// outputs are replaced by a shorter list, the records past its end belong to
// outputs the job no longer has, and would otherwise be listed as its files.
// Records below n are overwritten as their outputs are downloaded again.
func dropFilesFrom(tx *sql.Tx, id string, n int) error {
	_, err := tx.Exec("DELETE FROM files WHERE job_id = ? AND n >= ?", id, n)
	return err
}

// FileSaved records one verified output file of a completed job. The last
// one goes with the job's move to done instead (Apply's files).
func (s *Store) FileSaved(ctx context.Context, id string, f File) error {
	err := s.write(ctx, func(tx *sql.Tx) error { return saveFile(tx, id, f) })
	if err != nil {
		return fmt.Errorf("ledger: job %s: save file %s: %w", id, f.Path, err)
	}
	return nil
}

func saveFile(tx *sql.Tx, id string, f File) error {
	_, err := tx.Exec(`INSERT INTO files (job_id, n, url, path, bytes, sha256) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (job_id, n) DO UPDATE SET url = excluded.url, path = excluded.path, bytes = excluded.bytes, sha256 = excluded.sha256`,
		id, f.N, f.URL, f.Path, f.Bytes, f.SHA256)
	return err
}

func nullInt(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

func nullFloat(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}
