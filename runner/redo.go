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

// redoRejected sends every rejected done job back to pending, its files
// kept under _history/<id>/<request id>/ and its request id in the
// submissions table, so that the feed submits it again like any pending
// job: paid, and counted by --max-cost and --max-submissions.
func (r *run) redoRejected(ctx context.Context, jobs []store.Job) (int, error) {
	k := keeper{ctx: ctx, out: r.out}
	for _, j := range jobs {
		files, err := r.cfg.Store.Files(ctx, j.ID)
		if err != nil {
			return 0, err
		}
		kept, err := k.Archive(j.ID, j.RequestID, files)
		if err != nil {
			return 0, fmt.Errorf("job %s: %w", j.ID, err)
		}
		why := fmt.Sprintf("output of request %s rejected in review: submitted again (--redo-rejected); its files are kept in %s", j.RequestID, HistoryDir)
		if err := r.cfg.Store.Redo(ctx, j.ID, kept, why); err != nil {
			return 0, err
		}
	}
	return len(jobs), nil
}
