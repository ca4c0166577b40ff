package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"

	"comfybatch/lifecycle"
)

// DeepestQueue is the highest queue position RunComfy last reported for a
// queued job, 0 when none is known. A person reads it to tell a provider
// backlog from a hang.
func (s *Store) DeepestQueue(ctx context.Context) (_ int, err error) {
	defer wrapErr(&err, "ledger: read queue positions")
	var v sql.NullInt64
	err = s.db.QueryRowContext(ctx, "SELECT max(queue_position) FROM jobs WHERE state = ?", string(lifecycle.Queued)).Scan(&v)
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

// EachUncosted calls fn for every job with such submissions: every one
// that may be billed and whose cost RunComfy did not report — in flight,
// unknown, completed or failed at RunComfy without a cost. Only a
// submission whose outcome proved nothing was created (pending, or a 4xx
// rejection: failed without a request id) or that was cancelled in the
// queue is not counted. A budget counts these at their estimate, never at
// $0.
func (s *Store) EachUncosted(ctx context.Context, fn func(Uncosted) error) (err error) {
	defer wrapErr(&err, "ledger: list uncosted submissions")
	rows, err := s.db.QueryContext(ctx, `SELECT s.job_id, j.model, j.input, count(*)
		FROM submissions s JOIN jobs j ON j.id = s.job_id
		WHERE s.cost_usd IS NULL AND `+outcomeWhere(lifecycle.MayBeBilled)+`
		GROUP BY s.job_id ORDER BY j.rowid`)
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
func (s *Store) Reported(ctx context.Context) (n int, usd float64, err error) {
	var sum sql.NullFloat64
	err = s.db.QueryRowContext(ctx, "SELECT count(cost_usd), sum(cost_usd) FROM submissions").Scan(&n, &sum)
	return n, sum.Float64, err
}

// EachID calls fn with the id of every job in one of the states, through
// the state index: cheap enough to run every second on a large ledger.
func (s *Store) EachID(ctx context.Context, fn func(id string) error, states ...lifecycle.State) (err error) {
	defer wrapErr(&err, "ledger: list job ids")
	if len(states) == 0 {
		return nil
	}
	args := make([]any, len(states))
	for i, st := range states {
		args[i] = string(st)
	}
	rows, err := s.db.QueryContext(ctx,
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

// HighestCosts is, by model, the highest cost RunComfy reported for one
// submission: a budget counts no submission of the model at less.
func (s *Store) HighestCosts(ctx context.Context) (_ map[string]float64, err error) {
	defer wrapErr(&err, "ledger: read the highest costs")
	rows, err := s.db.QueryContext(ctx, `SELECT j.model, max(s.cost_usd) FROM submissions s JOIN jobs j ON j.id = s.job_id
		WHERE s.cost_usd IS NOT NULL GROUP BY j.model`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	m := make(map[string]float64)
	for rows.Next() {
		var model string
		var usd float64
		if err := rows.Scan(&model, &usd); err != nil {
			return nil, err
		}
		m[model] = usd
	}
	return m, rows.Err()
}

// Unreported counts the submissions RunComfy finished (completed or failed)
// without reporting their cost: their spend is unknown, not $0.
func (s *Store) Unreported(ctx context.Context) (n int, err error) {
	defer wrapErr(&err, "ledger: count unreported costs")
	err = s.db.QueryRowContext(ctx, "SELECT count(*) FROM submissions s WHERE s.cost_usd IS NULL AND "+outcomeWhere(lifecycle.Ran)).Scan(&n)
	return n, err
}

// outcomeWhere spells out, as an SQL condition on a submissions row s, a
// lifecycle rule over its recorded outcome and whether it has a request id:
// the rule stays lifecycle's, the ledger only applies it.
func outcomeWhere(rule func(outcome lifecycle.State, hasRequest bool) bool) string {
	var terms []string
	for _, outcome := range append([]lifecycle.State{""}, lifecycle.States...) {
		for _, hasRequest := range []bool{false, true} {
			if rule(outcome, hasRequest) {
				null := "IS NULL"
				if hasRequest {
					null = "IS NOT NULL"
				}
				terms = append(terms, fmt.Sprintf("(s.outcome = '%s' AND s.request_id %s)", outcome, null))
			}
		}
	}
	if len(terms) == 0 {
		return "0"
	}
	return "(" + strings.Join(terms, " OR ") + ")"
}
