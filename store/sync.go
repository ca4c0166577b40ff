package store

import (
	"database/sql"
	"encoding/json"
	"fmt"
)

// Spec is a job as the manifest defines it now.
type Spec struct {
	ID          string
	Model       string
	Input       json.RawMessage // canonical JSON
	Fingerprint string
}

// Change says how a manifest job relates to its ledger record.
type Change string

const (
	New       Change = "new"       // not in the ledger
	Unchanged Change = "unchanged" // same fingerprint
	Changed   Change = "changed"   // fingerprint differs from what was recorded
)

// Known is what the ledger holds of a job, for planning.
type Known struct {
	State       State
	Fingerprint string
}

// Known returns, for every job in the ledger, its state and fingerprint.
func (s *Store) Known() (map[string]Known, error) {
	rows, err := s.db.QueryContext(readContext(), "SELECT id, state, fingerprint FROM jobs")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	m := make(map[string]Known)
	for rows.Next() {
		var id string
		var k Known
		if err := rows.Scan(&id, &k.State, &k.Fingerprint); err != nil {
			return nil, err
		}
		m[id] = k
	}
	return m, rows.Err()
}

// Classify tells how spec relates to what the ledger knows.
func Classify(spec Spec, known map[string]Known) Change {
	k, ok := known[spec.ID]
	switch {
	case !ok:
		return New
	case k.Fingerprint == spec.Fingerprint:
		return Unchanged
	default:
		return Changed
	}
}

// SyncReport counts what Sync did.
type SyncReport struct {
	New, Changed, Unchanged int
	ChangedIDs              []string
}

// Sync brings the ledger in line with the manifest in one transaction: new
// jobs are added as pending; a job whose fingerprint changed goes back to
// pending with its new input, while its earlier submissions (request ids,
// costs) stay in the submissions table and its transitions in events. Jobs no
// longer in the manifest are left untouched.
func (s *Store) Sync(specs []Spec) (SyncReport, error) {
	known, err := s.Known()
	if err != nil {
		return SyncReport{}, err
	}
	var rep SyncReport
	var add, change []Spec
	for _, sp := range specs {
		switch Classify(sp, known) {
		case New:
			add = append(add, sp)
		case Changed:
			change = append(change, sp)
		default:
			rep.Unchanged++
		}
	}
	rep.New, rep.Changed = len(add), len(change)
	if len(add) == 0 && len(change) == 0 {
		return rep, nil
	}
	err = s.write(func(tx *sql.Tx) error {
		now := s.stamp()
		ins, err := tx.Prepare("INSERT INTO jobs (id, model, input, fingerprint, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)")
		if err != nil {
			return err
		}
		defer ins.Close()
		ev, err := tx.Prepare("INSERT INTO events (job_id, at, from_state, to_state, detail) VALUES (?, ?, '', 'pending', 'added')")
		if err != nil {
			return err
		}
		defer ev.Close()
		for _, sp := range add {
			if _, err := ins.Exec(sp.ID, sp.Model, string(sp.Input), sp.Fingerprint, now, now); err != nil {
				return fmt.Errorf("job %s: %w", sp.ID, err)
			}
			if _, err := ev.Exec(sp.ID, now); err != nil {
				return err
			}
		}
		for _, sp := range change {
			old := known[sp.ID]
			detail := fmt.Sprintf("input changed (fingerprint %.12s → %.12s); earlier submissions kept in history", old.Fingerprint, sp.Fingerprint)
			if _, err := s.move(tx, sp.ID, nil, Pending, detail,
				`model = ?, input = ?, fingerprint = ?, remote_status = '', queue_position = NULL, request_id = NULL,
				 cost_usd = NULL, error = '', outputs = '[]', submitted_at = NULL, finished_at = NULL`,
				sp.Model, string(sp.Input), sp.Fingerprint); err != nil {
				return err
			}
			if _, err := tx.Exec("DELETE FROM files WHERE job_id = ?", sp.ID); err != nil {
				return err
			}
		}
		return nil
	})
	for _, sp := range change {
		rep.ChangedIDs = append(rep.ChangedIDs, sp.ID)
	}
	return rep, err
}
