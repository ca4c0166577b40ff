package store

import (
	"database/sql"
	"encoding/json"
	"strings"
)

// DeepestQueue is the highest queue position RunComfy last reported for a
// queued job, 0 when none is known. A person reads it to tell a provider
// backlog from a hang.
func (s *Store) DeepestQueue() (int, error) {
	var v sql.NullInt64
	err := s.db.QueryRowContext(readContext(), "SELECT max(queue_position) FROM jobs WHERE state = ?", string(Queued)).Scan(&v)
	return int(v.Int64), err
}

// Uncosted is a job with submissions that may be billed but whose cost
// RunComfy has not reported: in flight, cut off before the request id was
// saved (unknown), or left at RunComfy when the job's input changed. The
// budget counts them at their estimate.
type Uncosted struct {
	ID          string
	Model       string          // the job's current model
	Input       json.RawMessage // the job's current input
	Submissions int
}

// EachUncosted calls fn for every job with such submissions. A submission
// whose outcome proved nothing was created (pending, or a 4xx rejection) or
// that ended without a reported cost is not counted: RunComfy bills what it
// reports.
func (s *Store) EachUncosted(fn func(Uncosted) error) error {
	rows, err := s.db.QueryContext(readContext(), `SELECT s.job_id, j.model, j.input, count(*)
		FROM submissions s JOIN jobs j ON j.id = s.job_id
		WHERE s.cost_usd IS NULL AND s.outcome IN ('', ?)
		GROUP BY s.job_id ORDER BY j.rowid`, string(Unknown))
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var u Uncosted
		var input string
		if err := rows.Scan(&u.ID, &u.Model, &input, &u.Submissions); err != nil {
			return err
		}
		u.Input = json.RawMessage(input)
		if err := fn(u); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Reported counts the submissions whose cost RunComfy reported, and their
// sum: status estimates what is in flight at that average.
func (s *Store) Reported() (n int, usd float64, err error) {
	var sum sql.NullFloat64
	err = s.db.QueryRowContext(readContext(), "SELECT count(cost_usd), sum(cost_usd) FROM submissions").Scan(&n, &sum)
	return n, sum.Float64, err
}

// EachID calls fn with the id of every job in one of the states, through
// the state index: cheap enough to run every second on a large ledger.
func (s *Store) EachID(fn func(id string) error, states ...State) error {
	if len(states) == 0 {
		return nil
	}
	args := make([]any, len(states))
	for i, st := range states {
		args[i] = string(st)
	}
	rows, err := s.db.QueryContext(readContext(),
		"SELECT id FROM jobs WHERE state IN (?"+strings.Repeat(", ?", len(states)-1)+")", args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return err
		}
		if err := fn(id); err != nil {
			return err
		}
	}
	return rows.Err()
}
