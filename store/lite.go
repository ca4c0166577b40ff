package store

import (
	"context"
	"database/sql"

	"comfybatch/lifecycle"
)

// EachJobState streams every job's id and state, without the heavier columns:
// enough to count a 100,000-job ledger in little memory.
func (s *Store) EachJobState(ctx context.Context, fn func(id string, st lifecycle.State) error) (err error) {
	defer wrapErr(&err, "ledger: list job states")
	rows, err := s.db.QueryContext(ctx, "SELECT id, state FROM jobs ORDER BY rowid")
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var st lifecycle.State
		if err := rows.Scan(&id, &st); err != nil {
			return err
		}
		if err := fn(id, st); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Output is one file of a done job, with what metadata.jsonl says of it.
type Output struct {
	JobID, Model, RequestID string
	Input                   []byte
	File                    File
}

// EachOutput streams every file of every done job, in one query.
func (s *Store) EachOutput(ctx context.Context, fn func(Output) error) (err error) {
	defer wrapErr(&err, "ledger: list outputs")
	rows, err := s.db.QueryContext(ctx, `SELECT j.id, j.model, j.request_id, j.input, f.n, f.url, f.path, f.bytes, f.sha256
		FROM jobs j JOIN files f ON f.job_id = j.id WHERE j.state = ? ORDER BY j.rowid, f.n`, string(lifecycle.Done))
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var o Output
		var req sql.NullString
		if err := rows.Scan(&o.JobID, &o.Model, &req, &o.Input, &o.File.N, &o.File.URL, &o.File.Path, &o.File.Bytes, &o.File.SHA256); err != nil {
			return err
		}
		o.RequestID = req.String
		if err := fn(o); err != nil {
			return err
		}
	}
	return rows.Err()
}
