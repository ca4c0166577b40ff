package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// Durations returns, by model, how long its jobs took as earlier runs saw
// them, oldest first.
func (s *Store) Durations(ctx context.Context) (_ map[string][]time.Duration, err error) {
	defer wrapErr(&err, "ledger: read job durations")
	rows, err := s.db.QueryContext(ctx, "SELECT model, samples FROM durations")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string][]time.Duration{}
	for rows.Next() {
		var model, raw string
		if err := rows.Scan(&model, &raw); err != nil {
			return nil, err
		}
		var ms []int64
		if json.Unmarshal([]byte(raw), &ms) != nil {
			continue // a damaged row teaches nothing; the run relearns
		}
		for _, v := range ms {
			out[model] = append(out[model], time.Duration(v)*time.Millisecond)
		}
	}
	return out, rows.Err()
}

// SaveDurations replaces what the ledger knows of the models' job
// durations.
func (s *Store) SaveDurations(ctx context.Context, byModel map[string][]time.Duration) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		for model, ds := range byModel {
			ms := make([]int64, len(ds))
			for i, d := range ds {
				ms[i] = d.Milliseconds()
			}
			b, _ := json.Marshal(ms)
			if _, err := tx.Exec("INSERT INTO durations (model, samples) VALUES (?, ?) ON CONFLICT (model) DO UPDATE SET samples = excluded.samples", model, string(b)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ledger: save job durations: %w", err)
	}
	return nil
}
