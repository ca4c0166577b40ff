package store

import (
	"database/sql"
	"fmt"
)

// CancelRefused records that RunComfy would not cancel a job (it answered
// outcome, e.g. "not_cancellable", with the request's status remote): the
// job keeps its state, so the next run collects it, and its history says
// that a cancel was asked and refused. A job RunComfy did cancel is
// recorded with Cancelled.
func (s *Store) CancelRefused(id, remote, outcome string) error {
	return s.write(func(tx *sql.Tx) error {
		var cur State
		if err := tx.QueryRow("SELECT state FROM jobs WHERE id = ?", id).Scan(&cur); err != nil {
			return fmt.Errorf("job %s: %w", id, err)
		}
		detail := "cancel refused: " + outcome
		if remote != "" {
			detail += " (remote status " + remote + ")"
		}
		_, err := s.move(tx, id, []State{Queued, Running}, cur, detail, "")
		return err
	})
}
