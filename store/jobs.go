package store

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// State is a job's place in its life (SPEC §5).
type State string

const (
	Pending    State = "pending"
	Submitting State = "submitting"
	Queued     State = "queued"
	Running    State = "running"
	Completed  State = "completed"
	Done       State = "done"
	Failed     State = "failed"
	Cancelled  State = "cancelled"
	Unknown    State = "unknown"
)

// States lists every state in the order a person reads a run's progress.
var States = []State{Pending, Submitting, Queued, Running, Completed, Done, Failed, Cancelled, Unknown}

// InFlight reports whether a job in this state has a request at RunComfy
// that has not finished.
func (st State) InFlight() bool { return st == Queued || st == Running }

// Awaited reports a job with a request at RunComfy whose result is still to
// be collected: in flight, or completed and not yet downloaded. It has been
// paid for, so a change of input waits until it is collected (Sync).
func (st State) Awaited() bool { return st.InFlight() || st == Completed }

// Settled reports whether a job needs nothing more from this run.
func (st State) Settled() bool {
	return st == Done || st == Failed || st == Cancelled || st == Unknown
}

// Job is a job's current record.
type Job struct {
	ID            string
	Model         string
	Input         json.RawMessage
	Fingerprint   string
	State         State
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
	Seq    int64  `json:"-"`
	JobID  string `json:"-"`
	At     string `json:"at"`
	From   State  `json:"from"`
	To     State  `json:"to"`
	Detail string `json:"detail,omitempty"`
}

// move is the one place a job's state changes: it checks the state the job
// leaves from, applies the column updates and appends the event in the same
// transaction. An event is written when the state changes or detail says
// something; repeated polls that change nothing write nothing.
func (s *Store) move(tx *sql.Tx, id string, from []State, to State, detail string, sets string, args ...any) (State, error) {
	var cur State
	if err := tx.QueryRow("SELECT state FROM jobs WHERE id = ?", id).Scan(&cur); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return "", fmt.Errorf("job %s: not in the ledger", id)
		}
		return "", err
	}
	if len(from) > 0 && !hasState(from, cur) {
		return cur, fmt.Errorf("job %s: %w: is %s, wanted one of %s", id, ErrConflict, cur, joinStates(from))
	}
	now := s.stamp()
	q := "UPDATE jobs SET state = ?, updated_at = ?"
	if sets != "" {
		q += ", " + sets
	}
	q += " WHERE id = ?"
	all := append([]any{string(to), now}, args...)
	all = append(all, id)
	if _, err := tx.Exec(q, all...); err != nil {
		return cur, fmt.Errorf("job %s: %w", id, err)
	}
	if cur != to || detail != "" {
		if _, err := tx.Exec("INSERT INTO events (job_id, at, from_state, to_state, detail) VALUES (?, ?, ?, ?, ?)",
			id, now, string(cur), string(to), detail); err != nil {
			return cur, err
		}
	}
	return cur, nil
}

func hasState(list []State, st State) bool {
	for _, x := range list {
		if x == st {
			return true
		}
	}
	return false
}

func joinStates(list []State) string {
	parts := make([]string, len(list))
	for i, st := range list {
		parts[i] = string(st)
	}
	return strings.Join(parts, ", ")
}

// Recover turns every job left in submitting by a process that died mid-POST
// into unknown: it may be running and billed at RunComfy, and its request id
// was never saved, so it must not be resubmitted without the user's say-so.
func (s *Store) Recover() (n int, err error) {
	err = s.write(func(tx *sql.Tx) error {
		rows, err := tx.Query("SELECT id FROM jobs WHERE state = ?", string(Submitting))
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
			if _, err := s.move(tx, id, []State{Submitting}, Unknown,
				"submission was cut off before its request id was saved; it may be running and billed", ""); err != nil {
				return err
			}
			if _, err := tx.Exec("UPDATE submissions SET outcome = ? WHERE job_id = ? AND request_id IS NULL AND outcome = ''", string(Unknown), id); err != nil {
				return err
			}
		}
		n = len(ids)
		return nil
	})
	return n, err
}

// SubmitFrom lists the states a job may be submitted from. Whether a failed,
// cancelled or unknown job is actually resubmitted is the runner's decision
// (--retry-failed, --resubmit-unknown); the ledger only keeps the record.
var SubmitFrom = []State{Pending, Failed, Cancelled, Unknown}

// BeginSubmit records, durably and before the POST, that the job is about to
// be submitted. A crash from here until Submitted leaves the job in
// submitting, which the next start turns into unknown.
func (s *Store) BeginSubmit(id string) (attempt int, err error) {
	err = s.write(func(tx *sql.Tx) error {
		var fp string
		if err := tx.QueryRow("SELECT attempts + 1, fingerprint FROM jobs WHERE id = ?", id).Scan(&attempt, &fp); err != nil {
			return fmt.Errorf("job %s: %w", id, err)
		}
		if _, err := s.move(tx, id, SubmitFrom, Submitting, fmt.Sprintf("attempt %d", attempt),
			"attempts = ?, request_id = NULL, remote_status = '', queue_position = NULL, error = '', cost_usd = NULL, outputs = '[]', finished_at = NULL",
			attempt); err != nil {
			return err
		}
		if _, err := tx.Exec("DELETE FROM files WHERE job_id = ?", id); err != nil {
			return err
		}
		_, err := tx.Exec("INSERT INTO submissions (job_id, attempt, fingerprint, started_at) VALUES (?, ?, ?, ?)",
			id, attempt, fp, s.stamp())
		return err
	})
	return attempt, err
}

// Submitted saves the request id the moment the API returns it.
func (s *Store) Submitted(id, requestID string) error {
	return s.write(func(tx *sql.Tx) error {
		now := s.stamp()
		if _, err := s.move(tx, id, []State{Submitting}, Queued, "request "+requestID,
			"request_id = ?, submitted_at = ?", requestID, now); err != nil {
			return err
		}
		return s.setSubmission(tx, id, "request_id = ?", requestID)
	})
}

// SubmitFailed records a submission that did not yield a request id: to is
// Pending when the API proved no job was created, Failed when it rejected the
// input, Unknown when the outcome cannot be known.
func (s *Store) SubmitFailed(id string, to State, msg string) error {
	return s.write(func(tx *sql.Tx) error {
		if _, err := s.move(tx, id, []State{Submitting}, to, msg, "error = ?", msg); err != nil {
			return err
		}
		return s.setSubmission(tx, id, "outcome = ?", string(to))
	})
}

func (s *Store) setSubmission(tx *sql.Tx, id, sets string, args ...any) error {
	args = append(args, id)
	_, err := tx.Exec("UPDATE submissions SET "+sets+" WHERE job_id = ? AND attempt = (SELECT attempts FROM jobs WHERE jobs.id = submissions.job_id)", args...)
	return err
}

// Observe records a polled, non-terminal remote status: st is Queued or
// Running, or "" to keep the state (a status nobody documented is stored
// verbatim and the job polled again).
func (s *Store) Observe(id string, st State, remote string, queuePos *int) error {
	return s.write(func(tx *sql.Tx) error {
		var curRemote string
		var cur State
		if err := tx.QueryRow("SELECT state, remote_status FROM jobs WHERE id = ?", id).Scan(&cur, &curRemote); err != nil {
			return err
		}
		if !cur.InFlight() {
			return fmt.Errorf("job %s: %w: is %s, wanted one of %s", id, ErrConflict, cur, joinStates([]State{Queued, Running}))
		}
		if st == "" {
			st = cur
		}
		detail := ""
		if remote != curRemote {
			detail = "remote status " + remote
		}
		if cur == st && detail == "" {
			_, err := tx.Exec("UPDATE jobs SET queue_position = ? WHERE id = ?", nullInt(queuePos), id)
			return err
		}
		_, err := s.move(tx, id, []State{Queued, Running}, st, detail,
			"remote_status = ?, queue_position = ?", remote, nullInt(queuePos))
		return err
	})
}

// Completed saves a successful result: the output URLs and the cost.
func (s *Store) Completed(id, remote string, outputs []string, cost *float64) error {
	out, err := json.Marshal(outputs)
	if err != nil {
		return err
	}
	return s.write(func(tx *sql.Tx) error {
		if _, err := s.move(tx, id, []State{Queued, Running}, Completed,
			fmt.Sprintf("%d output(s)", len(outputs)),
			"remote_status = ?, queue_position = NULL, outputs = ?, cost_usd = ?, finished_at = ?, error = ''",
			remote, string(out), nullFloat(cost), s.stamp()); err != nil {
			return err
		}
		if err := dropFilesFrom(tx, id, len(outputs)); err != nil {
			return err
		}
		return s.setSubmission(tx, id, "outcome = ?, cost_usd = ?", string(Completed), nullFloat(cost))
	})
}

// Failed records a job that ended without output, with the server's message.
func (s *Store) Failed(id, remote, msg string, cost *float64) error {
	return s.finish(id, Failed, remote, msg, cost)
}

// Cancelled records a job the server cancelled.
func (s *Store) Cancelled(id, remote, msg string) error {
	return s.finish(id, Cancelled, remote, msg, nil)
}

func (s *Store) finish(id string, to State, remote, msg string, cost *float64) error {
	return s.write(func(tx *sql.Tx) error {
		if _, err := s.move(tx, id, []State{Queued, Running, Completed}, to, msg,
			"remote_status = ?, queue_position = NULL, error = ?, cost_usd = coalesce(?, cost_usd), finished_at = ?",
			remote, msg, nullFloat(cost), s.stamp()); err != nil {
			return err
		}
		// coalesce: a completed job that fails later (its download, say)
		// keeps the cost its result reported.
		return s.setSubmission(tx, id, "outcome = ?, cost_usd = coalesce(?, cost_usd)", string(to), nullFloat(cost))
	})
}

// SetOutputs replaces a completed job's output URLs with fresh ones, after a
// saved URL expired. A result that now lists fewer outputs drops the file
// records of the ones it no longer has, in the same write.
func (s *Store) SetOutputs(id string, outputs []string) error {
	out, err := json.Marshal(outputs)
	if err != nil {
		return err
	}
	return s.write(func(tx *sql.Tx) error {
		if _, err := s.move(tx, id, []State{Completed}, Completed, "output URLs refreshed", "outputs = ?", string(out)); err != nil {
			return err
		}
		return dropFilesFrom(tx, id, len(outputs))
	})
}

// dropFilesFrom deletes a job's file records numbered n and up: when a job's
// outputs are replaced by a shorter list, the records past its end belong to
// outputs the job no longer has, and would otherwise be listed as its files.
// Records below n are overwritten as their outputs are downloaded again.
func dropFilesFrom(tx *sql.Tx, id string, n int) error {
	_, err := tx.Exec("DELETE FROM files WHERE job_id = ? AND n >= ?", id, n)
	return err
}

// FileSaved records one verified output file.
func (s *Store) FileSaved(id string, f File) error {
	return s.write(func(tx *sql.Tx) error { return saveFile(tx, id, f) })
}

// LastFileSaved records the last verified output file of a completed job
// and marks the job done, in one write: a one-output job costs one commit
// here instead of two.
func (s *Store) LastFileSaved(id string, f File) error {
	return s.write(func(tx *sql.Tx) error {
		if err := saveFile(tx, id, f); err != nil {
			return err
		}
		_, err := s.move(tx, id, []State{Completed}, Done, "", "")
		return err
	})
}

func saveFile(tx *sql.Tx, id string, f File) error {
	_, err := tx.Exec(`INSERT INTO files (job_id, n, url, path, bytes, sha256) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (job_id, n) DO UPDATE SET url = excluded.url, path = excluded.path, bytes = excluded.bytes, sha256 = excluded.sha256`,
		id, f.N, f.URL, f.Path, f.Bytes, f.SHA256)
	return err
}

// MarkDone records that every output of a completed job is on disk.
func (s *Store) MarkDone(id string) error {
	return s.write(func(tx *sql.Tx) error {
		_, err := s.move(tx, id, []State{Completed}, Done, "", "")
		return err
	})
}

// Redownload sends a done job whose file went missing back to completed, so
// that it is downloaded again from its saved URLs without resubmitting.
func (s *Store) Redownload(id, why string) error {
	return s.write(func(tx *sql.Tx) error {
		_, err := s.move(tx, id, []State{Done}, Completed, why, "")
		return err
	})
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
