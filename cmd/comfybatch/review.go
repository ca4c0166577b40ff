package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"comfybatch/lifecycle"
	"comfybatch/runner"
	"comfybatch/store"
	"comfybatch/suggest"
)

type reviewFlags struct {
	accept, reject bool
	note           string
}

func (a *app) reviewCommand() *cobra.Command {
	var o reviewFlags
	cmd := &cobra.Command{
		Use:   "review MANIFEST --accept ID... | --reject ID... [--note TEXT]",
		Short: "Accept or reject jobs' outputs (what the view page does, for scripts)",
		Long: `Review records a verdict on the current output of each job named: accepted
or rejected, with an optional note. It works while a run holds the ledger:
reviews go to a journal beside it (<ledger>-reviews), which each run copies
into the ledger. A review belongs to the request whose output it judged; a
job submitted again has no review until its new output is judged.

results and metadata.jsonl carry each job's review; results --review
accepted exports the accepted jobs only; run --redo-rejected submits the
rejected ones again, keeping the rejected output in the job's history.`,
		Example: "  comfybatch review jobs.yaml --accept clip-001 clip-002\n  comfybatch review jobs.yaml --reject clip-003 --note \"hands melt at 2s\"",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return usagef("review needs the manifest and at least one job id: comfybatch review MANIFEST --accept ID... (or --reject ID...)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.review(cmd.Context(), args[0], args[1:], o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.accept, "accept", false, "accept the outputs of the job ids given")
	f.BoolVar(&o.reject, "reject", false, "reject the outputs of the job ids given (run --redo-rejected submits them again)")
	f.StringVar(&o.note, "note", "", "a note kept with each review")
	return cmd
}

func (a *app) review(ctx context.Context, manifestPath string, ids []string, o reviewFlags) error {
	if o.accept == o.reject {
		return usagef("review needs exactly one of --accept and --reject")
	}
	verdict := store.Accepted
	if o.reject {
		verdict = store.Rejected
	}
	path := a.ledgerPath(manifestPath)
	st, err := store.Open(path, store.Options{ReadOnly: true})
	if errors.Is(err, store.ErrNoLedger) {
		return usagef("no ledger at %s yet: nothing has run for this manifest, so there is nothing to review (start with `comfybatch run %s`)", path, manifestPath)
	}
	if err != nil {
		return err
	}
	defer st.Close()
	rs, err := reviewsFor(ctx, st, ids, verdict, o.note)
	if err != nil {
		return err
	}
	j, err := store.OpenReviews(path, nil)
	if err != nil {
		return err
	}
	defer j.Close()
	if err := j.Put(ctx, rs...); err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "%s %d job(s)\n", verdict, len(rs))
	return nil
}

// reviewsFor checks that every id is a job of the ledger with an output to
// judge, and makes its review. Every problem is reported at once; nothing
// is recorded unless all ids are good.
func reviewsFor(ctx context.Context, st *store.Store, ids []string, v store.Verdict, note string) ([]store.Review, error) {
	known := map[string]store.Job{}
	var names []string
	err := st.EachJob(ctx, func(j store.Job) error {
		known[j.ID] = j
		names = append(names, j.ID)
		return nil
	})
	if err != nil {
		return nil, err
	}
	var rs []store.Review
	var problems []string
	for _, id := range ids {
		j, ok := known[id]
		switch {
		case !ok:
			msg := fmt.Sprintf("%s: no such job in the ledger", id)
			if s, ok := suggest.Closest(id, names); ok {
				msg += fmt.Sprintf(" (did you mean %s?)", s)
			}
			problems = append(problems, msg)
		case j.State != lifecycle.Done:
			problems = append(problems, fmt.Sprintf("%s: it is %s; only a done job's output can be reviewed", id, j.State))
		case slices.ContainsFunc(rs, func(r store.Review) bool { return r.JobID == id }):
			// named twice: once is enough
		default:
			rs = append(rs, store.Review{JobID: id, RequestID: j.RequestID, Verdict: v, Note: note})
		}
	}
	if len(problems) > 0 {
		return nil, usagef("nothing recorded:\n  %s", strings.Join(problems, "\n  "))
	}
	return rs, nil
}

// planRedo marks, in p, the unchanged done jobs whose output was rejected as
// jobs to submit, as run --redo-rejected does (runner.Rejected), and counts
// them.
func planRedo(ctx context.Context, ledger string, p *runner.Plan) (int, error) {
	st, err := store.Open(ledger, store.Options{ReadOnly: true})
	if err != nil {
		return 0, err
	}
	defer st.Close()
	jobs, err := runner.Rejected(ctx, st, func(string) bool { return true })
	if err != nil {
		return 0, fmt.Errorf("read ledger %s: %w", ledger, err)
	}
	rejected := map[string]bool{}
	for _, j := range jobs {
		rejected[j.ID] = true
	}
	n := 0
	for i, pj := range p.Jobs {
		if pj.Change == lifecycle.Unchanged && pj.State == lifecycle.Done && rejected[pj.Job.ID] {
			p.Jobs[i].Action = lifecycle.ActionSubmit
			n++
		}
	}
	return n, nil
}
