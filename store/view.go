package store

import (
	"context"
	"database/sql"
)

// Version grows with every state change of every job (it is the last
// event's number): a reader that polls compares it to skip rereading a
// ledger where nothing moved. One read of the events table's last row.
func (s *Store) Version(ctx context.Context) (v int64, err error) {
	defer wrapErr(&err, "ledger: read version")
	var n sql.NullInt64
	err = s.db.QueryRowContext(ctx, "SELECT max(seq) FROM events").Scan(&n)
	return n.Int64, err
}

// RunningSince maps each job that ever started running to when it last did.
func (s *Store) RunningSince(ctx context.Context) (_ map[string]string, err error) {
	defer wrapErr(&err, "ledger: read run starts")
	rows, err := s.db.QueryContext(ctx, "SELECT job_id, max(at) FROM events WHERE to_state = 'running' GROUP BY job_id")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, at string
		if err := rows.Scan(&id, &at); err != nil {
			return nil, err
		}
		out[id] = at
	}
	return out, rows.Err()
}

// ReviewsVersion is the journal's last review number (0 without one).
func ReviewsVersion(ctx context.Context, ledger string) (int64, error) {
	db, err := openJournalRO(ledger)
	if db == nil || err != nil {
		return 0, err
	}
	defer db.Close()
	var n sql.NullInt64
	err = db.QueryRowContext(ctx, "SELECT max(seq) FROM reviews").Scan(&n)
	return n.Int64, err
}
