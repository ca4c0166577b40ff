package runner

import (
	"context"
	"fmt"

	"comfybatch/lifecycle"
	"comfybatch/store"
)

// Rejected lists the done jobs whose current output was rejected in review
// (store.Current): the jobs `run --redo-rejected` submits again and `plan
// --redo-rejected` counts. Only jobs of the manifest count.
func Rejected(ctx context.Context, st *store.Store, inManifest func(id string) bool) ([]store.Job, error) {
	reviews, err := store.ReadReviews(ctx, st.Path(), st)
	if err != nil {
		return nil, err
	}
	var out []store.Job
	err = st.EachJob(ctx, func(j store.Job) error {
		if r, ok := store.Current(reviews, j); ok && r.Verdict == store.Rejected && inManifest(j.ID) {
			out = append(out, j)
		}
		return nil
	}, lifecycle.Done)
	return out, err
}

// rejected lists the run's jobs that --redo-rejected submits again: the
// rejected ones of the manifest, within --job.
func (r *run) rejected(ctx context.Context) ([]store.Job, error) {
	return Rejected(ctx, r.cfg.Store, func(id string) bool {
		_, ok := r.cfg.Manifest.Job(id)
		return ok && (r.cfg.Only == nil || r.cfg.Only[id])
	})
}

// redoJob submits a rejected done job again: once its submission is
// certain to go (its local files read, a place under --max-submissions
// taken), its files move to _history/<id>/<request id>/ and the ledger
// keeps its request id in the submissions table, sends it to pending and
// on to submitting; then it is collected like any job.
func (r *run) redoJob(j store.Job, p *place) error {
	ok, err := r.submitAfter(&j, p, func() error {
		files, err := r.cfg.Store.Files(r.work, j.ID)
		if err != nil {
			return err
		}
		kept, err := keeper{ctx: r.work, out: r.out}.Archive(j.ID, j.RequestID, files)
		if err != nil {
			return fmt.Errorf("job %s: %w", j.ID, err)
		}
		why := fmt.Sprintf("output of request %s rejected in review: submitted again (--redo-rejected); its files are kept in %s", j.RequestID, HistoryDir)
		if err := r.cfg.Store.Redo(r.work, j.ID, kept, why); err != nil {
			return err
		}
		r.redone.Add(1)
		j.State, j.RequestID, j.Outputs = lifecycle.Pending, "", nil
		return nil
	})
	if err != nil || !ok || r.cfg.SubmitOnly {
		return err
	}
	return r.collect(j)
}
