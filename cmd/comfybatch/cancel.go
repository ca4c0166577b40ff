package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"comfybatch/lifecycle"
	"comfybatch/runcomfy"
	"comfybatch/runner"
	"comfybatch/store"
)

// outcomeSkipped is cancel's own outcome for a job the ledger says is not at
// RunComfy; the others are lifecycle's.
const outcomeSkipped = "skipped"

func (a *app) cancelCommand() *cobra.Command {
	var ids []string
	var rps float64
	cmd := &cobra.Command{
		Use:   "cancel MANIFEST",
		Short: "Cancel queued jobs at RunComfy (all of them, or --job ID ...)",
		Long: `Cancel asks RunComfy to cancel every queued job of the manifest, or only the
jobs named with --job. RunComfy cancels jobs still in its queue; a job
already running answers not_cancellable: it finishes, is billed, and the
next run collects it. Each answer is recorded in the ledger: cancelled jobs
become cancelled (run --retry-failed submits them again); a refusal is
noted in the job's history.

Cancel writes to the ledger, so it cannot run beside ` + "`comfybatch run`" + ` on the
same manifest (exit 3): stop the run first (Ctrl-C keeps every request id),
cancel, then run again to collect the rest. It needs the API token.`,
		Example: "  comfybatch cancel jobs.yaml\n  comfybatch cancel jobs.yaml --job tub-001 --job tub-002 --json\n  comfybatch cancel jobs.yaml --job 'tub-variants.*'",
		Args:    manifestArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.cancel(cmd.Context(), args[0], ids, rps)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&ids, "job", nil, "cancel only this job, queued or running in the ledger (repeatable, comma lists, globs such as 'tub.*')")
	f.Float64Var(&rps, "rps", 10, "most API requests per second")
	cmd.ValidArgsFunction = completeManifest
	cmd.RegisterFlagCompletionFunc("job", a.completeJobIDs)
	return cmd
}

// cancelJSON is what `cancel --json` prints. Fields may be added, never
// renamed.
type cancelJSON struct {
	Ledger string          `json:"ledger"`
	Counts map[string]int  `json:"counts"` // jobs per outcome
	Jobs   []cancelJobJSON `json:"jobs"`
}

type cancelJobJSON struct {
	ID           string `json:"id"`
	RequestID    string `json:"request_id"`
	State        string `json:"state"`   // in the ledger, after the answer
	Outcome      string `json:"outcome"` // cancelled, not_cancellable, requested, skipped, not_found, error
	RemoteStatus string `json:"remote_status"`
	Detail       string `json:"detail"`
}

func (a *app) cancel(ctx context.Context, manifestPath string, ids []string, rps float64) error {
	if !(rps > 0) {
		return usagef("--rps must be a positive number")
	}
	patterns, err := jobPatterns(ids)
	if err != nil {
		return err
	}
	log, err := a.logger()
	if err != nil {
		return err
	}
	path := a.ledgerPath(manifestPath)
	// Opening for writing would create a ledger: look first.
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if len(patterns) > 0 {
			return usagef("no ledger at %s: nothing was submitted for this manifest, so job %s is not at RunComfy", path, patterns[0])
		}
		fmt.Fprintf(a.stderr, "no ledger at %s: nothing was submitted for this manifest, so there is nothing to cancel\n", path)
		return a.printCancel(cancelJSON{Ledger: path, Counts: map[string]int{}, Jobs: []cancelJobJSON{}})
	}
	api, cleanup, err := a.client(log, rps, 4)
	if err != nil {
		return err
	}
	defer cleanup()
	st, err := store.Open(path, store.Options{})
	if err != nil {
		if errors.Is(err, store.ErrLocked) {
			return fmt.Errorf("%w: cancel records its answers in the ledger, so it cannot run beside `comfybatch run`; stop the run (Ctrl-C keeps every request id), cancel, then run again to collect the rest", err)
		}
		return usageError{err}
	}
	defer st.Close()
	if err := a.claim(ctx, st, manifestPath, nil, log, false); err != nil {
		return err
	}

	targets, err := cancelTargets(ctx, st, patterns, manifestPath)
	if err != nil {
		return err
	}
	out := cancelJSON{Ledger: path, Counts: map[string]int{}, Jobs: make([]cancelJobJSON, len(targets))}
	var g errgroup.Group
	g.SetLimit(4)
	var ledgerErr error
	var mu sync.Mutex
	for i, j := range targets {
		res := &out.Jobs[i]
		*res = cancelJobJSON{ID: j.ID, RequestID: j.RequestID, State: string(j.State)}
		if !j.State.InFlight() {
			res.Outcome, res.Detail = outcomeSkipped, fmt.Sprintf("not at RunComfy: the job is %s", j.State)
			continue
		}
		if ctx.Err() != nil {
			res.Outcome, res.Detail = lifecycle.OutcomeError, "not sent: interrupted"
			continue
		}
		g.Go(func() error {
			if err := cancelOne(ctx, api, st, j, res); err != nil {
				mu.Lock()
				ledgerErr = errors.Join(ledgerErr, err)
				mu.Unlock()
			}
			return nil
		})
	}
	g.Wait()
	failed := 0
	for _, r := range out.Jobs {
		out.Counts[r.Outcome]++
		if r.Outcome == lifecycle.OutcomeError || r.Outcome == lifecycle.OutcomeNotFound {
			failed++
		}
	}
	if err := a.printCancel(out); err != nil {
		return err
	}
	if ledgerErr != nil {
		return fmt.Errorf("RunComfy answered, but the ledger could not record it: %w", ledgerErr)
	}
	if ctx.Err() != nil {
		fmt.Fprintln(a.stderr, "interrupted: some cancel requests were not sent; run the same command again")
		return runner.ErrInterrupted
	}
	if len(targets) == 0 {
		fmt.Fprintln(a.stderr, "no queued jobs: nothing to cancel (`comfybatch status` shows where the jobs are)")
	}
	if failed > 0 {
		msg := fmt.Sprintf("%d of %d cancel requests got no usable answer (see above); run the same command again to retry them", failed, len(targets))
		fmt.Fprintln(a.stderr, msg)
		return incompleteError{msg}
	}
	return nil
}

// cancelTargets picks the jobs to cancel: those the patterns select (each
// must match a job of the ledger), else every queued job. Running jobs are
// only tried when selected: RunComfy cannot cancel them, but the ledger may
// lag behind. No job outside the selection is ever sent a cancel.
func cancelTargets(ctx context.Context, st *store.Store, patterns []string, manifestPath string) ([]store.Job, error) {
	if len(patterns) == 0 {
		var jobs []store.Job
		err := st.EachJob(ctx, func(j store.Job) error {
			if j.State.Cancellable() {
				jobs = append(jobs, j)
			}
			return nil
		}, lifecycle.Queued)
		return jobs, err
	}
	_, ids, err := selectJobs(patterns, func(fn func(string) error) error {
		return st.EachJobState(ctx, func(id string, _ lifecycle.State) error { return fn(id) })
	}, "ledger", fmt.Sprintf("`comfybatch status %s -v` lists the jobs", manifestPath))
	if err != nil {
		return nil, err
	}
	jobs := make([]store.Job, 0, len(ids))
	for _, id := range ids {
		j, err := st.Job(ctx, id)
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, j)
	}
	return jobs, nil
}

// cancelOne asks RunComfy to cancel one job and records what lifecycle.Cancel
// makes of the answer. It returns an error only when the ledger could not
// record it. The ledger write outlives a Ctrl-C: RunComfy has answered.
func cancelOne(ctx context.Context, api *runcomfy.Client, st *store.Store, j store.Job, res *cancelJobJSON) error {
	resp, err := api.Cancel(ctx, j.RequestID)
	a := lifecycle.CancelAnswer{Status: resp.Status, Outcome: resp.Outcome}
	if err != nil {
		f := runcomfy.AnswerOf(err)
		a = lifecycle.CancelAnswer{Failure: &f}
	}
	d := lifecycle.Cancel(j.State, a)
	res.Outcome, res.RemoteStatus, res.Detail = d.Outcome, resp.Status, d.Detail
	if !d.Record {
		return nil
	}
	if err := st.Apply(context.WithoutCancel(ctx), j.ID, d.Step); err != nil {
		return err
	}
	res.State = string(d.Step.To)
	return nil
}

func (a *app) printCancel(out cancelJSON) error {
	if a.jsonOut {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	if len(out.Jobs) == 0 {
		return nil
	}
	tw, flush := newTable(a.stdout)
	fmt.Fprintln(tw, "ID\tREQUEST\tOUTCOME\tDETAIL")
	for _, j := range out.Jobs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", j.ID, orDash(j.RequestID), j.Outcome, j.Detail)
	}
	flush()
	return nil
}
