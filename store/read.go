package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"comfybatch/lifecycle"
)

const jobColumns = `id, model, input, fingerprint, state, remote_status, queue_position, request_id,
	attempts, cost_usd, error, outputs, submitted_at, finished_at, created_at, updated_at`

func scanJob(sc interface{ Scan(...any) error }) (Job, error) {
	var j Job
	var input, outputs string
	var qp sql.NullInt64
	var reqID, submitted, finished sql.NullString
	var cost sql.NullFloat64
	err := sc.Scan(&j.ID, &j.Model, &input, &j.Fingerprint, &j.State, &j.RemoteStatus, &qp, &reqID,
		&j.Attempts, &cost, &j.Error, &outputs, &submitted, &finished, &j.CreatedAt, &j.UpdatedAt)
	if err != nil {
		return j, err
	}
	j.Input = json.RawMessage(input)
	if qp.Valid {
		v := int(qp.Int64)
		j.QueuePosition = &v
	}
	if cost.Valid {
		v := cost.Float64
		j.CostUSD = &v
	}
	j.RequestID, j.SubmittedAt, j.FinishedAt = reqID.String, submitted.String, finished.String
	if err := json.Unmarshal([]byte(outputs), &j.Outputs); err != nil {
		return j, fmt.Errorf("job %s: outputs: %w", j.ID, err)
	}
	return j, nil
}

// Job returns one job's record.
func (s *Store) Job(ctx context.Context, id string) (_ Job, err error) {
	defer wrapErr(&err, "ledger: read job %s", id)
	j, err := scanJob(s.db.QueryRowContext(ctx, "SELECT "+jobColumns+" FROM jobs WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return j, fmt.Errorf("job %s: not in the ledger", id)
	}
	return j, err
}

// EachJob calls fn for every job in one of the states (all jobs when none are
// given), in the order they were added, streaming so that a ledger of 100,000
// jobs is never held in memory at once.
func (s *Store) EachJob(ctx context.Context, fn func(Job) error, states ...lifecycle.State) (err error) {
	defer wrapErr(&err, "ledger: list jobs")
	q := "SELECT " + jobColumns + " FROM jobs"
	args := make([]any, len(states))
	if len(states) > 0 {
		q += " WHERE state IN (?" + strings.Repeat(", ?", len(states)-1) + ")"
		for i, st := range states {
			args[i] = string(st)
		}
	}
	q += " ORDER BY rowid"
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return err
		}
		if err := fn(j); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Counts returns the number of jobs in each state.
func (s *Store) Counts(ctx context.Context) (_ map[lifecycle.State]int, err error) {
	defer wrapErr(&err, "ledger: count jobs")
	rows, err := s.db.QueryContext(ctx, "SELECT state, count(*) FROM jobs GROUP BY state")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	m := make(map[lifecycle.State]int)
	for rows.Next() {
		var st lifecycle.State
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, err
		}
		m[st] = n
	}
	return m, rows.Err()
}

// Spent is the cost the server reported for every submission ever recorded,
// including those of earlier inputs of changed jobs.
func (s *Store) Spent(ctx context.Context) (_ float64, err error) {
	defer wrapErr(&err, "ledger: sum costs")
	var v sql.NullFloat64
	err = s.db.QueryRowContext(ctx, "SELECT sum(cost_usd) FROM submissions").Scan(&v)
	return v.Float64, err
}

// Events returns a job's history, oldest first.
func (s *Store) Events(ctx context.Context, id string) (_ []Event, err error) {
	defer wrapErr(&err, "ledger: read events of job %s", id)
	rows, err := s.db.QueryContext(ctx, "SELECT seq, job_id, at, from_state, to_state, detail FROM events WHERE job_id = ? ORDER BY seq", id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var evs []Event
	for rows.Next() {
		var e Event
		if err := rows.Scan(&e.Seq, &e.JobID, &e.At, &e.From, &e.To, &e.Detail); err != nil {
			return nil, err
		}
		evs = append(evs, e)
	}
	return evs, rows.Err()
}

// Files returns a job's recorded output files in order.
func (s *Store) Files(ctx context.Context, id string) (_ []File, err error) {
	defer wrapErr(&err, "ledger: read files of job %s", id)
	return s.files(ctx, "SELECT n, url, path, bytes, sha256 FROM files WHERE job_id = ? ORDER BY n", id)
}

// files reads rows of (n, url, path, bytes, sha256).
func (s *Store) files(ctx context.Context, q string, args ...any) ([]File, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var fs []File
	for rows.Next() {
		var f File
		if err := rows.Scan(&f.N, &f.URL, &f.Path, &f.Bytes, &f.SHA256); err != nil {
			return nil, err
		}
		fs = append(fs, f)
	}
	return fs, rows.Err()
}

// EachFile calls fn for every recorded file, grouped by job in the order
// jobs were added.
func (s *Store) EachFile(ctx context.Context, fn func(jobID string, f File) error) (err error) {
	defer wrapErr(&err, "ledger: list files")
	rows, err := s.db.QueryContext(ctx,
		"SELECT f.job_id, f.n, f.url, f.path, f.bytes, f.sha256 FROM files f JOIN jobs j ON j.id = f.job_id ORDER BY j.rowid, f.n")
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var f File
		if err := rows.Scan(&id, &f.N, &f.URL, &f.Path, &f.Bytes, &f.SHA256); err != nil {
			return err
		}
		if err := fn(id, f); err != nil {
			return err
		}
	}
	return rows.Err()
}

// EachFileSize calls fn with the path and size of every recorded file, in no
// particular order: what a look for missing files needs, read without the
// join and sort of EachFile.
func (s *Store) EachFileSize(ctx context.Context, fn func(path string, bytes int64) error) (err error) {
	defer wrapErr(&err, "ledger: list file sizes")
	rows, err := s.db.QueryContext(ctx, "SELECT path, bytes FROM files")
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var path string
		var n int64
		if err := rows.Scan(&path, &n); err != nil {
			return err
		}
		if err := fn(path, n); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Submission is one recorded POST.
type Submission struct {
	Attempt     int      `json:"attempt"`
	Fingerprint string   `json:"fingerprint"`
	RequestID   string   `json:"request_id,omitempty"`
	StartedAt   string   `json:"started_at"`
	Outcome     string   `json:"outcome,omitempty"`
	CostUSD     *float64 `json:"cost_usd,omitempty"`
}

// Submissions returns every POST recorded for a job, oldest first.
func (s *Store) Submissions(ctx context.Context, id string) (_ []Submission, err error) {
	defer wrapErr(&err, "ledger: read submissions of job %s", id)
	rows, err := s.db.QueryContext(ctx, "SELECT attempt, fingerprint, request_id, started_at, outcome, cost_usd FROM submissions WHERE job_id = ? ORDER BY attempt", id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Submission
	for rows.Next() {
		var sb Submission
		var req sql.NullString
		var cost sql.NullFloat64
		if err := rows.Scan(&sb.Attempt, &sb.Fingerprint, &req, &sb.StartedAt, &sb.Outcome, &cost); err != nil {
			return nil, err
		}
		sb.RequestID = req.String
		if cost.Valid {
			v := cost.Float64
			sb.CostUSD = &v
		}
		out = append(out, sb)
	}
	return out, rows.Err()
}
