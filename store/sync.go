package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"iter"
	"slices"
	"strings"

	"comfybatch/lifecycle"
)

// Spec is a job as the manifest defines it now.
type Spec struct {
	ID          string
	Model       string
	Input       json.RawMessage // canonical JSON
	Fingerprint string
	// Order is the job's place in the manifest: new jobs are added, and so
	// later worked on, in this order.
	Order int
}

// Known is what the ledger holds of a job, for planning.
type Known struct {
	State       lifecycle.State
	Fingerprint string
}

// Known returns, for every job in the ledger, its state and fingerprint.
func (s *Store) Known(ctx context.Context) (_ map[string]Known, err error) {
	defer wrapErr(&err, "ledger: read jobs")
	rows, err := s.db.QueryContext(ctx, "SELECT id, state, fingerprint FROM jobs")
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
func Classify(spec Spec, known map[string]Known) lifecycle.Change {
	k, ok := known[spec.ID]
	switch {
	case !ok:
		return lifecycle.New
	case k.Fingerprint == spec.Fingerprint:
		return lifecycle.Unchanged
	default:
		return lifecycle.Changed
	}
}

// SyncReport counts what Sync did.
type SyncReport struct {
	New, Changed, Unchanged int
	ChangedIDs              []string
	// Deferred counts changed jobs whose earlier request is still to be
	// collected (lifecycle.State.Awaited): they keep their old input until it is, and
	// the next Sync after that sends them back to pending.
	Deferred int
}

// Sync brings the ledger in line with the manifest in one transaction: new
// jobs are added as pending; a job whose fingerprint changed goes back to
// pending with its new input, while its earlier submissions (request ids,
// costs) stay in the submissions table and its transitions in events. A
// changed job whose request is still to be collected keeps its old input
// until it is (SyncReport.Deferred): it was paid for, and the next Sync
// resets it. Jobs no longer in the manifest are left untouched.
func (s *Store) Sync(ctx context.Context, specs []Spec) (SyncReport, error) {
	sorted := slices.Clone(specs)
	for i := range sorted {
		sorted[i].Order = i
	}
	slices.SortStableFunc(sorted, func(a, b Spec) int { return strings.Compare(a.ID, b.ID) })
	return s.SyncSorted(ctx, slices.Values(sorted))
}

// SyncSorted is Sync for specs given in increasing id order, each id once:
// they are merged with the ledger's jobs read in the same order, so that
// neither side is held in memory whole, only what changes.
func (s *Store) SyncSorted(ctx context.Context, specs iter.Seq[Spec]) (_ SyncReport, err error) {
	defer wrapErr(&err, "ledger: sync with the manifest")
	type changed struct {
		Spec
		old string // the fingerprint it had
	}
	var rep SyncReport
	var add []Spec
	var change []changed
	rows, err := s.db.QueryContext(ctx, "SELECT id, fingerprint, state FROM jobs ORDER BY id")
	if err != nil {
		return rep, err
	}
	var id, fp string
	var st lifecycle.State
	more := rows.Next()
	if more {
		if err := rows.Scan(&id, &fp, &st); err != nil {
			rows.Close()
			return rep, err
		}
	}
	last := ""
	for sp := range specs {
		if sp.ID <= last && last != "" {
			rows.Close()
			return rep, fmt.Errorf("sync: job %s out of order or given twice", sp.ID)
		}
		last = sp.ID
		for more && id < sp.ID {
			if more = rows.Next(); more {
				if err := rows.Scan(&id, &fp, &st); err != nil {
					rows.Close()
					return rep, err
				}
			}
		}
		switch {
		case !more || id != sp.ID:
			add = append(add, sp)
		case fp == sp.Fingerprint:
			rep.Unchanged++
		case !st.Replaceable():
			rep.Deferred++
		default:
			change = append(change, changed{sp, fp})
		}
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return rep, err
	}
	rows.Close()
	slices.SortFunc(add, func(a, b Spec) int { return a.Order - b.Order })
	rep.New, rep.Changed = len(add), len(change)
	if len(add) == 0 && len(change) == 0 {
		return rep, nil
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
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
			detail := fmt.Sprintf("input changed (fingerprint %.12s → %.12s); earlier submissions kept in history", sp.old, sp.Fingerprint)
			if _, err := s.apply(tx, sp.ID, lifecycle.Step{To: lifecycle.Pending, Detail: detail}); err != nil {
				return fmt.Errorf("job %s: %w", sp.ID, err)
			}
			if _, err := tx.Exec(`UPDATE jobs SET model = ?, input = ?, fingerprint = ?, remote_status = '', queue_position = NULL,
				request_id = NULL, cost_usd = NULL, error = '', outputs = '[]', submitted_at = NULL, finished_at = NULL WHERE id = ?`,
				sp.Model, string(sp.Input), sp.Fingerprint, sp.ID); err != nil {
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
