package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
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
	// Returns maps the fingerprints of the job's earlier inputs that were,
	// or may have been, paid for to the state the job takes up again when
	// its input changes back to one of them (lifecycle.ReturnTo).
	Returns map[string]lifecycle.State
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
	if err := rows.Err(); err != nil {
		return nil, err
	}
	earlier, err := s.db.QueryContext(ctx, `SELECT s.job_id, s.fingerprint, s.outcome, s.request_id IS NOT NULL
		FROM submissions s JOIN jobs j ON j.id = s.job_id
		WHERE s.fingerprint != j.fingerprint
		  AND s.attempt = (SELECT max(attempt) FROM submissions l WHERE l.job_id = s.job_id AND l.fingerprint = s.fingerprint)`)
	if err != nil {
		return nil, err
	}
	defer earlier.Close()
	for earlier.Next() {
		var id, fp, outcome string
		var hasRequest bool
		if err := earlier.Scan(&id, &fp, &outcome, &hasRequest); err != nil {
			return nil, err
		}
		to, ok := lifecycle.ReturnTo(outcome, hasRequest)
		if !ok {
			continue
		}
		k := m[id]
		if k.Returns == nil {
			k.Returns = map[string]lifecycle.State{}
		}
		k.Returns[fp] = to
		m[id] = k
	}
	return m, earlier.Err()
}

// Classify tells how spec relates to what the ledger knows.
func Classify(spec Spec, known map[string]Known) lifecycle.Change {
	k, ok := known[spec.ID]
	switch {
	case !ok:
		return lifecycle.New
	case k.Fingerprint == spec.Fingerprint:
		return lifecycle.Unchanged
	case k.Returns[spec.Fingerprint] != "":
		return lifecycle.Returned
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
	// Reused counts changed jobs whose input returned to one the ledger
	// holds a completed submission for: that paid result is the job's
	// again, and nothing is submitted.
	Reused int
}

// Keeper moves a changed job's files in the output folder; the ledger
// records where they went. Both calls may be repeated after a crash: what
// was moved already is reported where it is now.
type Keeper interface {
	// Archive moves the files of a job's current result out of the way of
	// its next one (they were paid for), returning them with their new
	// paths.
	Archive(jobID, requestID string, files []File) ([]File, error)
	// Restore moves the kept files of an earlier result back to where a
	// job's files live, returning them with their paths there and whether
	// every one of them is there now.
	Restore(jobID string, files []File) ([]File, bool, error)
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
func (s *Store) SyncSorted(ctx context.Context, specs iter.Seq[Spec]) (SyncReport, error) {
	return s.SyncKeeping(ctx, specs, nil)
}

// reuse is a changed job whose new input an earlier completed submission
// had: what the transaction needs to make that result the job's again.
type reuse struct {
	to        lifecycle.State // lifecycle.ReturnTo of the earlier submission
	attempt   int
	requestID string
	startedAt string
	outputs   string
	cost      sql.NullFloat64
	files     []File // where they are now, when Restore moved them back
	whole     bool   // every file is back: the job is done, else completed
}

// SyncKeeping is SyncSorted with the files of changed jobs kept: a done
// job's files are archived (keeper.Archive) before its new input replaces
// the old, and a job whose input returns to one an earlier completed
// submission had gets that result back (keeper.Restore) instead of being
// submitted again. A nil keeper keeps no files (the ledger still reuses
// the result, which is downloaded again).
func (s *Store) SyncKeeping(ctx context.Context, specs iter.Seq[Spec], keeper Keeper) (_ SyncReport, err error) {
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
	archived := map[string][]File{}
	reused := map[string]*reuse{} // nil: submitted again
	for _, c := range change {
		arch, ru, err := s.keep(ctx, c.ID, c.Fingerprint, keeper)
		if err != nil {
			return rep, fmt.Errorf("job %s: %w", c.ID, err)
		}
		archived[c.ID] = arch
		if ru != nil {
			reused[c.ID] = ru
		}
	}
	rep.New, rep.Changed, rep.Reused = len(add), len(change)-len(reused), len(reused)
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
			// apply (bySync) checks again, inside the write, that the job
			// is still one a new input may replace.
			if err := keepHistory(tx, sp.ID, archived[sp.ID]); err != nil {
				return fmt.Errorf("job %s: %w", sp.ID, err)
			}
			if err := s.replace(tx, sp.Spec, sp.old, reused[sp.ID]); err != nil {
				return fmt.Errorf("job %s: %w", sp.ID, err)
			}
		}
		return nil
	})
	for _, sp := range change {
		if _, ok := reused[sp.ID]; !ok {
			rep.ChangedIDs = append(rep.ChangedIDs, sp.ID)
		}
	}
	return rep, err
}

// keep works out, outside the write, what becomes of a changed job's
// files: its current result's are archived, and an earlier completed
// result of the new input is found and its files restored.
func (s *Store) keep(ctx context.Context, id, fingerprint string, keeper Keeper) ([]File, *reuse, error) {
	var req sql.NullString
	if err := s.db.QueryRowContext(ctx, "SELECT request_id FROM jobs WHERE id = ?", id).Scan(&req); err != nil {
		return nil, nil, err
	}
	files, err := s.Files(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	var archived []File
	if len(files) > 0 && keeper != nil {
		if archived, err = keeper.Archive(id, req.String, files); err != nil {
			return nil, nil, err
		}
	}
	var ru reuse
	var rid sql.NullString
	var outcome string
	err = s.db.QueryRowContext(ctx, `SELECT attempt, request_id, outcome, outputs, cost_usd, started_at FROM submissions
		WHERE job_id = ? AND fingerprint = ? ORDER BY attempt DESC LIMIT 1`,
		id, fingerprint).Scan(&ru.attempt, &rid, &outcome, &ru.outputs, &ru.cost, &ru.startedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return archived, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	ru.requestID = rid.String
	to, ok := lifecycle.ReturnTo(outcome, rid.Valid)
	if !ok {
		return archived, nil, nil // nothing was paid for it: submit it again
	}
	ru.to = to
	if to != lifecycle.Completed {
		return archived, &ru, nil
	}
	kept, err := s.historyFiles(ctx, id, ru.attempt)
	if err != nil {
		return nil, nil, err
	}
	if len(kept) > 0 && keeper != nil {
		if ru.files, ru.whole, err = keeper.Restore(id, kept); err != nil {
			return nil, nil, err
		}
	}
	var outs []string
	json.Unmarshal([]byte(ru.outputs), &outs)
	if len(outs) == 0 && !ru.whole {
		// Completed, but nothing left to save its result from: the job is
		// paid for and has nothing to show; say so rather than pay again.
		ru.to = lifecycle.Failed
	}
	return archived, &ru, nil
}

func (s *Store) historyFiles(ctx context.Context, id string, attempt int) ([]File, error) {
	return s.files(ctx, "SELECT n, url, path, bytes, sha256 FROM history_files WHERE job_id = ? AND attempt = ? ORDER BY n", id, attempt)
}

// keepHistory records where a job's current files went, under the
// submission they belong to, and drops them from its current files.
func keepHistory(tx *sql.Tx, id string, archived []File) error {
	for _, f := range archived {
		// Under the submission the files belong to: the one whose request
		// the job holds (an earlier attempt, after a reuse), else its last.
		if _, err := tx.Exec(`INSERT INTO history_files (job_id, attempt, n, url, path, bytes, sha256)
			SELECT ?, coalesce((SELECT max(x.attempt) FROM submissions x WHERE x.job_id = j.id AND x.request_id = j.request_id), j.attempts),
			       ?, ?, ?, ?, ? FROM jobs j WHERE j.id = ?
			ON CONFLICT (job_id, attempt, n) DO UPDATE SET url = excluded.url, path = excluded.path, bytes = excluded.bytes, sha256 = excluded.sha256`,
			id, f.N, f.URL, f.Path, f.Bytes, f.SHA256, id); err != nil {
			return err
		}
	}
	return nil
}

// replace gives a job its new input. Without ru it goes back to pending,
// to be submitted; with ru it takes up the earlier submission its input
// returned to: a completed one's result is the job's again (done when its
// files are all back, else completed, to be saved again from its outputs),
// anything else its state. Nothing is submitted, nothing paid.
func (s *Store) replace(tx *sql.Tx, sp Spec, oldFP string, ru *reuse) error {
	to, detail := lifecycle.Pending, fmt.Sprintf("input changed (fingerprint %.12s → %.12s); earlier submissions kept in history", oldFP, sp.Fingerprint)
	var req, startedAt any
	var cost sql.NullFloat64
	remote, why, outputs := "", "", "[]"
	if ru != nil {
		to = ru.to
		if to == lifecycle.Completed && ru.whole {
			to = lifecycle.Done
		}
		change := fmt.Sprintf("input changed back (fingerprint %.12s → %.12s) to that of attempt %d", oldFP, sp.Fingerprint, ru.attempt)
		switch to {
		case lifecycle.Done, lifecycle.Completed:
			detail = change + ", which RunComfy completed (request " + ru.requestID + "): its paid result is reused"
			remote = "completed"
		case lifecycle.Queued:
			detail = change + ", whose request " + ru.requestID + " is still to be collected"
		case lifecycle.Unknown:
			why = "the input changed back to that of a submission whose outcome is unknown: it may be running and billed; check your RunComfy dashboard, then run --resubmit-unknown"
			detail = change + ", whose outcome is unknown: not submitted again"
		default:
			why = "the input changed back to that of attempt " + fmt.Sprint(ru.attempt) + ", which ended " + string(to) + "; `run --retry-failed` submits it again"
			detail = change + ", which ended " + string(to) + ": not submitted again"
		}
		if ru.requestID != "" {
			req = ru.requestID
		}
		cost, outputs, startedAt = ru.cost, ru.outputs, ru.startedAt
	}
	if _, err := s.apply(tx, sp.ID, lifecycle.Step{To: to, Detail: detail}, true); err != nil {
		return err
	}
	if _, err := tx.Exec(`UPDATE jobs SET model = ?, input = ?, fingerprint = ?, remote_status = ?, queue_position = NULL,
		request_id = ?, cost_usd = ?, error = ?, outputs = ?, submitted_at = ?, finished_at = NULL WHERE id = ?`,
		sp.Model, string(sp.Input), sp.Fingerprint, remote, req, cost, why, outputs, startedAt, sp.ID); err != nil {
		return err
	}
	if _, err := tx.Exec("DELETE FROM files WHERE job_id = ?", sp.ID); err != nil {
		return err
	}
	if to != lifecycle.Done {
		return nil
	}
	for _, f := range ru.files {
		if err := saveFile(tx, sp.ID, f); err != nil {
			return err
		}
	}
	_, err := tx.Exec("DELETE FROM history_files WHERE job_id = ? AND attempt = ?", sp.ID, ru.attempt)
	return err
}

// Meta reads a fact the ledger keeps about itself ("" when absent).
func (s *Store) Meta(ctx context.Context, key string) (value string, err error) {
	defer wrapErr(&err, "ledger: read "+key)
	err = s.db.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = ?", key).Scan(&value)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return value, err
}

// SetMeta records a fact about the ledger; "" removes it.
func (s *Store) SetMeta(ctx context.Context, key, value string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		if value == "" {
			_, err := tx.Exec("DELETE FROM meta WHERE key = ?", key)
			return err
		}
		_, err := tx.Exec("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, value)
		return err
	})
	if err != nil {
		return fmt.Errorf("ledger: record %s: %w", key, err)
	}
	return nil
}

// SampleOutputs returns up to n output URLs the ledger holds (downloaded
// files' and jobs' outputs): where they are served from tells which API
// the ledger's requests were made at.
func (s *Store) SampleOutputs(ctx context.Context, n int) (_ []string, err error) {
	defer wrapErr(&err, "ledger: read output URLs")
	rows, err := s.db.QueryContext(ctx, `SELECT url FROM files WHERE url LIKE 'http%'
		UNION ALL SELECT outputs FROM jobs WHERE outputs != '[]' LIMIT ?`, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		var list []string
		if json.Unmarshal([]byte(v), &list) == nil {
			out = append(out, list...) // a job's outputs
		} else {
			out = append(out, v) // a file's URL
		}
	}
	return out, rows.Err()
}

// RequestCount counts the submissions that got a request id.
func (s *Store) RequestCount(ctx context.Context) (n int, err error) {
	defer wrapErr(&err, "ledger: count request ids")
	err = s.db.QueryRowContext(ctx, "SELECT count(*) FROM submissions WHERE request_id IS NOT NULL").Scan(&n)
	return n, err
}
