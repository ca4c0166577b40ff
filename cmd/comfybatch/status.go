package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"comfybatch/lifecycle"
	"comfybatch/store"
)

func (a *app) statusCommand() *cobra.Command {
	var only, states []string
	cmd := &cobra.Command{
		Use:   "status MANIFEST",
		Short: "Show how many jobs are in each state and what they cost (per job with -v, --job or --state)",
		Long: `Status reads the manifest's ledger without locking it, so it works from
another terminal while a run is going on. It needs no token and makes no
API call.

It shows the jobs per state, what RunComfy reported spending (over every run
of this ledger, and per model), the jobs in flight and still to submit,
priced at the average cost reported so far, and the jobs that failed, were
cancelled or are unknown, grouped by their message with a few job ids each.

--state failed,unknown lists just the jobs in those states, one line each:
id, state, attempts, cost, request id, message. --job picks jobs by id
(repeatable, comma lists, globs such as 'tub.*'). With -v or --job it shows
each job in full: its request id, cost, files, every submission it ever had
(resubmissions and earlier inputs included) and its full history. --json
prints one object; its fields are listed in the README and are only ever
added to, never renamed.`,
		Example: "  comfybatch status jobs.yaml\n  comfybatch status jobs.yaml --state failed,unknown\n  comfybatch status jobs.yaml --job tub-001\n  comfybatch status jobs.yaml --state failed --json | jq -r '.jobs[].id'",
		Args:    manifestArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.status(cmd.Context(), args[0], only, states)
		},
	}
	cmd.Flags().StringArrayVar(&only, "job", nil, "show only this job, with its history (repeatable, comma lists, globs; implies -v)")
	cmd.Flags().StringSliceVar(&states, "state", nil, "list only the jobs in these states, one line each (comma list, e.g. failed,unknown)")
	cmd.ValidArgsFunction = completeManifest
	cmd.RegisterFlagCompletionFunc("job", a.completeJobIDs)
	cmd.RegisterFlagCompletionFunc("state", completeStates)
	return cmd
}

// completeStates offers the job states for --state.
func completeStates(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	var out []string
	for _, st := range lifecycle.States {
		out = append(out, string(st))
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// failureStates are the settled states that need a person; status groups
// their jobs by message.
var failureStates = []lifecycle.State{lifecycle.Failed, lifecycle.Cancelled, lifecycle.Unknown}

// groupIDs is how many job ids each failure group carries.
const groupIDs = 5

// statusJSON is what `status --json` prints. Fields may be added, never
// renamed (SPEC §2).
type statusJSON struct {
	Ledger string         `json:"ledger"`
	Counts map[string]int `json:"counts"` // every state, zeros included
	Total  int            `json:"total"`
	// SpentUSD is the sum of the costs RunComfy reported, over every
	// submission this ledger ever made.
	SpentUSD float64 `json:"spent_usd"`
	// UnreportedCost counts the finished submissions whose cost RunComfy
	// did not report: SpentUSD leaves them out, and their cost is unknown.
	UnreportedCost int `json:"unreported_cost_submissions"`
	// InFlight counts the jobs submitting, queued or running; Remaining the
	// pending ones (to submit).
	InFlight     int `json:"in_flight"`
	Remaining    int `json:"remaining"`
	DeepestQueue int `json:"deepest_queue_position"` // 0 when none is known
	// AverageCostUSD is the mean reported cost per submission; the two
	// estimates price in-flight and remaining jobs at it. All three are
	// null until a cost has been reported.
	AverageCostUSD        *float64 `json:"average_cost_usd"`
	EstimatedInFlightUSD  *float64 `json:"estimated_in_flight_usd"`
	EstimatedRemainingUSD *float64 `json:"estimated_remaining_usd"`
	// SpentByModel splits SpentUSD by model, models in name order.
	SpentByModel []store.ModelSpend `json:"spent_by_model"`
	// Failures groups the failed, cancelled and unknown jobs by state and
	// message, largest first, each with its count and first job ids.
	Failures []store.FailureGroup `json:"failures"`
	Jobs     []jobJSON            `json:"jobs,omitempty"` // with -v, --job or --state
}

// jobJSON is one job in `status -v --json`.
type jobJSON struct {
	ID            string             `json:"id"`
	Model         string             `json:"model"`
	State         lifecycle.State    `json:"state"`
	RemoteStatus  string             `json:"remote_status"`
	RequestID     string             `json:"request_id"`
	Attempts      int                `json:"attempts"`
	CostUSD       *float64           `json:"cost_usd"`
	Error         string             `json:"error"`
	Files         []store.File       `json:"files"`
	Events        []store.Event      `json:"events"`
	QueuePosition *int               `json:"queue_position"`
	Input         json.RawMessage    `json:"input"`
	Outputs       []string           `json:"outputs"`
	SubmittedAt   string             `json:"submitted_at"`
	FinishedAt    string             `json:"finished_at"`
	Submissions   []store.Submission `json:"submissions"` // every POST, oldest first
	Fingerprint   string             `json:"fingerprint"` // of model + input; a change means a new submission
}

func (a *app) status(ctx context.Context, manifestPath string, only, stateFlags []string) error {
	states, err := parseStates(stateFlags)
	if err != nil {
		return err
	}
	patterns, err := jobPatterns(only)
	if err != nil {
		return err
	}
	path := a.ledgerPath(manifestPath)
	out := statusJSON{Ledger: path, Counts: map[string]int{}, SpentByModel: []store.ModelSpend{}, Failures: []store.FailureGroup{}}
	for _, st := range lifecycle.States {
		out.Counts[string(st)] = 0
	}
	st, err := store.Open(path, store.Options{ReadOnly: true})
	if errors.Is(err, store.ErrNoLedger) {
		if len(patterns) > 0 {
			return usagef("no ledger at %s yet: nothing has run for this manifest, so job %s has no status", path, patterns[0])
		}
		fmt.Fprintf(a.stderr, "no ledger at %s yet: nothing has run for this manifest (start with `comfybatch run %s`)\n", path, manifestPath)
		return a.printStatus(out, nil)
	}
	if err != nil {
		return err
	}
	defer st.Close()
	if err := summarize(ctx, st, &out); err != nil {
		return fmt.Errorf("read ledger %s: %w", path, err)
	}
	if !a.verbose && len(patterns) == 0 && len(states) == 0 {
		return a.printStatus(out, nil)
	}
	inStates := func(s lifecycle.State) bool { return len(states) == 0 || slices.Contains(states, s) }
	var jobs func(func(store.Job) error) error
	if len(patterns) > 0 {
		// Check every pattern before printing anything.
		_, ids, err := selectJobs(patterns, func(fn func(string) error) error {
			return st.EachJobState(ctx, func(id string, _ lifecycle.State) error { return fn(id) })
		}, "ledger", fmt.Sprintf("`comfybatch status %s -v` lists every job", manifestPath))
		if err != nil {
			return err
		}
		jobs = func(fn func(store.Job) error) error {
			for _, id := range ids {
				j, err := st.Job(ctx, id)
				if err != nil {
					return err
				}
				if !inStates(j.State) {
					continue
				}
				if err := fn(j); err != nil {
					return err
				}
			}
			return nil
		}
	} else {
		// Streamed: a ledger of 100,000 jobs is never held in memory.
		jobs = func(fn func(store.Job) error) error { return st.EachJob(ctx, fn, states...) }
	}
	n := 0
	counted := func(fn func(store.Job) error) error {
		return jobs(func(j store.Job) error { n++; return fn(j) })
	}
	// --state alone lists the jobs one line each; -v or --job tells each
	// job in full.
	compact := len(states) > 0 && !a.verbose && !a.jsonOut
	if compact {
		err = printCompact(a.stdout, counted)
	} else {
		err = a.printStatus(out, func(fn func(jobJSON) error) error {
			return counted(func(j store.Job) error {
				jj, err := jobDetail(ctx, st, j)
				if err != nil {
					return err
				}
				return fn(jj)
			})
		})
	}
	if err == nil && n == 0 && len(states) > 0 {
		fmt.Fprintf(a.stderr, "no job is %s\n", joinStates(states))
	}
	return err
}

func joinStates(states []lifecycle.State) string {
	names := make([]string, len(states))
	for i, st := range states {
		names[i] = string(st)
	}
	if len(names) == 1 {
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// printCompact writes one line a job: id, state, attempts, cost, request
// id and message, aligned, with no header so that it pipes into cut and
// grep.
func printCompact(w io.Writer, jobs func(func(store.Job) error) error) error {
	tw, flush := newTable(w)
	err := jobs(func(j store.Job) error {
		cost := "-"
		switch {
		case j.CostUSD != nil:
			cost = usd(*j.CostUSD)
		case lifecycle.Ran(j.State, j.RequestID != ""):
			cost = "unknown"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", j.ID, j.State, j.Attempts, cost, orDash(j.RequestID), oneLine(j.Error))
		return nil
	})
	flush()
	return err
}

// oneLine keeps a message on one line, for tables.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// summarize fills in the counts and the money.
func summarize(ctx context.Context, st *store.Store, out *statusJSON) error {
	counts, err := st.Counts(ctx)
	if err != nil {
		return err
	}
	for s, n := range counts {
		out.Counts[string(s)] = n
		out.Total += n
	}
	out.InFlight = lifecycle.Count(counts, lifecycle.State.Outstanding)
	out.Remaining = counts[lifecycle.Pending]
	if out.SpentUSD, err = st.Spent(ctx); err != nil {
		return err
	}
	out.SpentUSD = round(out.SpentUSD)
	if out.UnreportedCost, err = st.Unreported(ctx); err != nil {
		return err
	}
	if out.DeepestQueue, err = st.DeepestQueue(ctx); err != nil {
		return err
	}
	if out.SpentByModel, err = st.SpentByModel(ctx); err != nil {
		return err
	}
	out.SpentByModel = nonNil(out.SpentByModel)
	for i := range out.SpentByModel {
		out.SpentByModel[i].SpentUSD = round(out.SpentByModel[i].SpentUSD)
	}
	if out.Failures, err = st.FailureGroups(ctx, groupIDs, failureStates...); err != nil {
		return err
	}
	out.Failures = nonNil(out.Failures)
	n, sum, err := st.Reported(ctx)
	if err != nil || n == 0 {
		return err
	}
	avg := sum / float64(n)
	at := func(jobs int) *float64 { v := round(avg * float64(jobs)); return &v }
	out.AverageCostUSD = at(1)
	out.EstimatedInFlightUSD, out.EstimatedRemainingUSD = at(out.InFlight), at(out.Remaining)
	return nil
}

// jobDetail reads everything the ledger holds about one job.
func jobDetail(ctx context.Context, st *store.Store, j store.Job) (jobJSON, error) {
	jj := jobJSON{ID: j.ID, Model: j.Model, State: j.State, RemoteStatus: j.RemoteStatus, RequestID: j.RequestID,
		Attempts: j.Attempts, CostUSD: j.CostUSD, Error: j.Error, QueuePosition: j.QueuePosition, Input: j.Input,
		Outputs: j.Outputs, SubmittedAt: j.SubmittedAt, FinishedAt: j.FinishedAt, Fingerprint: j.Fingerprint}
	var err error
	if jj.Files, err = st.Files(ctx, j.ID); err != nil {
		return jj, err
	}
	if jj.Events, err = st.Events(ctx, j.ID); err != nil {
		return jj, err
	}
	if jj.Submissions, err = st.Submissions(ctx, j.ID); err != nil {
		return jj, err
	}
	// Empty lists print as [], never null: a reader need not check both.
	jj.Files = nonNil(jj.Files)
	jj.Events = nonNil(jj.Events)
	jj.Submissions = nonNil(jj.Submissions)
	jj.Outputs = nonNil(jj.Outputs)
	if len(jj.Input) == 0 {
		jj.Input = json.RawMessage("{}")
	}
	return jj, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// printStatus writes the summary, then each job that jobs yields (nil: no
// jobs), as text or as one JSON object.
func (a *app) printStatus(s statusJSON, jobs func(func(jobJSON) error) error) error {
	if a.jsonOut {
		return writeStatusJSON(a.stdout, s, jobs)
	}
	printSummary(a.stdout, s)
	if jobs == nil {
		return nil
	}
	return jobs(func(j jobJSON) error {
		printJob(a.stdout, j)
		return nil
	})
}

// writeStatusJSON prints the object with its jobs streamed into it, laid
// out as json.MarshalIndent would.
func writeStatusJSON(w io.Writer, s statusJSON, jobs func(func(jobJSON) error) error) error {
	head, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if jobs == nil {
		_, err := fmt.Fprintf(w, "%s\n", head)
		return err
	}
	// Open the object back up and stream the jobs array into it.
	head = bytes.TrimSuffix(head, []byte("\n}"))
	if _, err := fmt.Fprintf(w, "%s,\n  \"jobs\": [", head); err != nil {
		return err
	}
	n := 0
	err = jobs(func(j jobJSON) error {
		b, err := json.MarshalIndent(j, "    ", "  ")
		if err != nil {
			return err
		}
		sep := ","
		if n == 0 {
			sep = ""
		}
		n++
		_, err = fmt.Fprintf(w, "%s\n    %s", sep, b)
		return err
	})
	if err != nil {
		return err
	}
	if n == 0 {
		_, err = io.WriteString(w, "]\n}\n")
	} else {
		_, err = io.WriteString(w, "\n  ]\n}\n")
	}
	return err
}

// printSummary is the table a person reads.
func printSummary(w io.Writer, s statusJSON) {
	tw, flush := newTable(w)
	fmt.Fprintf(tw, "ledger\t%s\n", s.Ledger)
	for _, st := range lifecycle.States {
		n := s.Counts[string(st)]
		if n == 0 && st != lifecycle.Done {
			continue
		}
		note := ""
		if st == lifecycle.Queued && s.DeepestQueue > 0 {
			note = fmt.Sprintf("deepest queue position %d", s.DeepestQueue)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\n", st, n, note)
	}
	fmt.Fprintf(tw, "total\t%d\t\n", s.Total)
	if s.UnreportedCost > 0 {
		fmt.Fprintf(tw, "spent\t%s + unknown\treported by RunComfy, every run of this ledger; %s finished without a reported cost\n",
			usd(s.SpentUSD), submissions(s.UnreportedCost))
	} else {
		fmt.Fprintf(tw, "spent\t%s\treported by RunComfy, every run of this ledger\n", usd(s.SpentUSD))
	}
	est := func(v *float64) string {
		if v == nil {
			return ""
		}
		return "≈ " + usd(*v) + " at the average cost reported so far (" + usd(*s.AverageCostUSD) + " a job)"
	}
	if s.InFlight > 0 {
		fmt.Fprintf(tw, "in flight\t%s\t%s\n", jobs(s.InFlight), est(s.EstimatedInFlightUSD))
	}
	if s.Remaining > 0 {
		fmt.Fprintf(tw, "remaining\t%s\t%s\n", jobs(s.Remaining), est(s.EstimatedRemainingUSD))
	}
	flush()
	printModels(w, s.SpentByModel)
	printFailures(w, s.Failures)
	// What to do next, for the states that need a person.
	c := s.Counts
	if n := c[string(lifecycle.Failed)] + c[string(lifecycle.Cancelled)]; n > 0 {
		fmt.Fprintf(w, "%s failed or cancelled: `status --state failed,cancelled` lists them; `run --retry-failed` submits them again (`--job ID` for some only)\n", jobs(n))
	}
	if n := c[string(lifecycle.Unknown)]; n > 0 {
		fmt.Fprintf(w, "%s unknown: the submission was cut off and may be running and billed; check your RunComfy dashboard, then `run --resubmit-unknown`\n", jobs(n))
	}
}

// printModels splits the spend by model.
func printModels(w io.Writer, models []store.ModelSpend) {
	if len(models) == 0 {
		return
	}
	fmt.Fprintln(w, "spent by model:")
	tw, flush := newTable(w)
	for _, m := range models {
		spent, note := usd(m.SpentUSD), submissions(m.Reported)+" reported"
		if m.Unreported > 0 {
			spent += " + unknown"
			note += fmt.Sprintf(", %d finished without a reported cost", m.Unreported)
		}
		if open := m.Submissions - m.Reported - m.Unreported; open > 0 {
			note += fmt.Sprintf(", %d not reported yet (in flight or unknown)", open)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", m.Model, spent, note)
	}
	flush()
}

// shownGroups is how many failure groups the text shows; --json has all.
const shownGroups = 10

// printFailures shows why jobs are not done: one group per state and
// message, its count, the message and its first job ids.
func printFailures(w io.Writer, groups []store.FailureGroup) {
	if len(groups) == 0 {
		return
	}
	fmt.Fprintln(w, "not done, by message:")
	shown := groups[:min(len(groups), shownGroups)]
	stateW, countW := 0, 0
	for _, g := range shown {
		stateW, countW = max(stateW, len(g.State)), max(countW, len(fmt.Sprint(g.Count)))
	}
	indent := strings.Repeat(" ", 2+stateW+2+countW+2)
	for _, g := range shown {
		msg := oneLine(g.Message)
		if msg == "" {
			msg = "(no message)"
		}
		fmt.Fprintf(w, "  %-*s  %*d  %s\n", stateW, g.State, countW, g.Count, clipRunes(msg, 160))
		ids := strings.Join(g.JobIDs, ", ")
		if more := g.Count - len(g.JobIDs); more > 0 {
			ids += fmt.Sprintf(" and %d more", more)
		}
		fmt.Fprintf(w, "%s%s\n", indent, ids)
	}
	if rest := groups[min(len(groups), shownGroups):]; len(rest) > 0 {
		n := 0
		for _, g := range rest {
			n += g.Count
		}
		fmt.Fprintf(w, "  and %d more messages over %s (`status --json` has every group)\n", len(rest), jobs(n))
	}
}

// clipRunes shortens s to n runes, marking the cut.
func clipRunes(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// printJob is one job of `status -v`: what it is, then every submission,
// then its history.
func printJob(w io.Writer, j jobJSON) {
	fmt.Fprintf(w, "\n%s  %s  %s\n", j.ID, j.State, j.Model)
	var facts []string
	if j.RequestID != "" {
		facts = append(facts, "request "+j.RequestID)
	}
	if j.RemoteStatus != "" {
		facts = append(facts, "remote "+j.RemoteStatus)
	}
	if j.QueuePosition != nil {
		facts = append(facts, fmt.Sprintf("queue position %d", *j.QueuePosition))
	}
	facts = append(facts, fmt.Sprintf("attempts %d", j.Attempts))
	switch {
	case j.CostUSD != nil:
		facts = append(facts, "cost "+usd(*j.CostUSD))
	case lifecycle.Ran(j.State, j.RequestID != ""):
		facts = append(facts, "cost unknown (not reported)")
	}
	fmt.Fprintf(w, "  %s\n", strings.Join(facts, "  "))
	if j.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", j.Error)
	}
	for _, f := range j.Files {
		fmt.Fprintf(w, "  file %s  %d bytes  sha256 %s\n", f.Path, f.Bytes, f.SHA256)
	}
	if len(j.Submissions) > 0 {
		fmt.Fprintln(w, "  submissions:")
		tw, flush := newTable(w)
		for _, sb := range j.Submissions {
			cost := "-"
			switch {
			case sb.CostUSD != nil:
				cost = usd(*sb.CostUSD)
			case lifecycle.Ran(lifecycle.State(sb.Outcome), sb.RequestID != ""):
				cost = "unknown"
			}
			outcome := sb.Outcome
			if outcome == "" {
				outcome = "in flight"
				if sb.Attempt != j.Attempts || j.State == lifecycle.Pending {
					// Sync moved the job on when its input changed.
					outcome = "no longer followed: the input changed"
				}
			}
			fmt.Fprintf(tw, "    #%d\t%s\t%s\t%s\t%s\tinput %.12s\n", sb.Attempt, sb.StartedAt, orDash(sb.RequestID), outcome, cost, sb.Fingerprint)
		}
		flush()
	}
	fmt.Fprintln(w, "  history:")
	tw, flush := newTable(w)
	for _, e := range j.Events {
		fmt.Fprintf(tw, "    %s\t%s → %s\t%s\n", e.At, orDash(string(e.From)), e.To, e.Detail)
	}
	flush()
}

// newTable aligns tab-separated cells; flush writes the table to w without
// the padding tabwriter leaves after a last, empty cell.
func newTable(w io.Writer) (*tabwriter.Writer, func()) {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
	return tw, func() {
		tw.Flush()
		for _, line := range strings.SplitAfter(buf.String(), "\n") {
			if line == "" {
				continue
			}
			io.WriteString(w, strings.TrimRight(line, " \n")+"\n")
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func submissions(n int) string {
	if n == 1 {
		return "1 submission"
	}
	return fmt.Sprintf("%d submissions", n)
}
