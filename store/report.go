package store

import (
	"context"
	"slices"
	"strings"

	"comfybatch/lifecycle"
)

// FailureGroup is the jobs in one state that share one error message.
type FailureGroup struct {
	State   lifecycle.State `json:"state"`
	Message string          `json:"message"`
	Count   int             `json:"count"`
	JobIDs  []string        `json:"job_ids"` // the first few, in the order jobs were added
}

// FailureGroups groups the jobs in the given states by state and error
// message, largest group first (ties: the group whose first job came
// first), keeping at most maxIDs ids each. It reads the ledger once, in
// order, holding one entry per distinct message rather than every job.
func (s *Store) FailureGroups(ctx context.Context, maxIDs int, states ...lifecycle.State) (_ []FailureGroup, err error) {
	defer wrapErr(&err, "ledger: group failures")
	if len(states) == 0 {
		return nil, nil
	}
	args := make([]any, len(states))
	for i, st := range states {
		args[i] = string(st)
	}
	rows, err := s.db.QueryContext(ctx, "SELECT id, state, error FROM jobs WHERE state IN (?"+
		strings.Repeat(", ?", len(states)-1)+") ORDER BY rowid", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	type key struct {
		st  lifecycle.State
		msg string
	}
	at := map[key]int{}
	var groups []FailureGroup
	for rows.Next() {
		var id string
		var k key
		if err := rows.Scan(&id, &k.st, &k.msg); err != nil {
			return nil, err
		}
		i, ok := at[k]
		if !ok {
			i = len(groups)
			at[k] = i
			groups = append(groups, FailureGroup{State: k.st, Message: k.msg, JobIDs: []string{}})
		}
		g := &groups[i]
		g.Count++
		if len(g.JobIDs) < maxIDs {
			g.JobIDs = append(g.JobIDs, id)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// Stable: equal counts keep the order of their first job.
	slices.SortStableFunc(groups, func(a, b FailureGroup) int { return b.Count - a.Count })
	return groups, nil
}

// ModelSpend is what RunComfy reported for one model's submissions.
type ModelSpend struct {
	Model string `json:"model"`
	// SpentUSD sums the costs reported; Reported counts those submissions,
	// Unreported the ones RunComfy finished without a cost (unknown, not $0).
	SpentUSD   float64 `json:"spent_usd"`
	Reported   int     `json:"reported_submissions"`
	Unreported int     `json:"unreported_submissions"`
	// Submissions counts every POST that may be billed (lifecycle.MayBeBilled),
	// in flight and cut off ones included.
	Submissions int `json:"submissions"`
}

// SpentByModel sums the reported costs per model, over every submission
// ever made, models in name order. A submission counts under its job's
// current model: the ledger keeps no model per submission.
func (s *Store) SpentByModel(ctx context.Context) (_ []ModelSpend, err error) {
	defer wrapErr(&err, "ledger: sum costs by model")
	rows, err := s.db.QueryContext(ctx, `SELECT j.model, coalesce(sum(s.cost_usd), 0), count(s.cost_usd),
		sum(CASE WHEN s.cost_usd IS NULL AND `+outcomeWhere(lifecycle.Ran)+` THEN 1 ELSE 0 END),
		sum(CASE WHEN s.cost_usd IS NOT NULL OR `+outcomeWhere(lifecycle.MayBeBilled)+` THEN 1 ELSE 0 END)
		FROM submissions s JOIN jobs j ON j.id = s.job_id GROUP BY j.model ORDER BY j.model`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ModelSpend
	for rows.Next() {
		var m ModelSpend
		if err := rows.Scan(&m.Model, &m.SpentUSD, &m.Reported, &m.Unreported, &m.Submissions); err != nil {
			return nil, err
		}
		if m.Submissions == 0 {
			continue // nothing that can cost money: rejected or refused before a job existed
		}
		out = append(out, m)
	}
	return out, rows.Err()
}
