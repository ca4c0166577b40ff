package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"comfybatch/lifecycle"
	"comfybatch/runner"
)

// closing is what report needs to know of a run beside its summary.
type closing struct {
	ledger, out, manifest string
	submitOnly            bool
	selected              int // jobs in the --job selection; 0 without one
}

// runJSON is what `run --json` prints on stdout when the run ends: one
// object. Fields may be added, never renamed.
type runJSON struct {
	Ledger string `json:"ledger"`
	Out    string `json:"out"`
	// Counts has the manifest's jobs by state (the selection's, with
	// --job), every state present.
	Counts    map[string]int `json:"counts"`
	Submitted int            `json:"submitted"` // new submissions made by this run
	// Selected counts the jobs of the --job selection (0: no selection);
	// OutsideSelection the jobs outside it at RunComfy or waiting for their
	// files, left for a run without --job.
	Selected         int `json:"selected"`
	OutsideSelection int `json:"outside_selection"`
	// Money as RunComfy reported it: during this run, and every run of
	// this ledger; UnreportedCost counts the finished submissions whose
	// cost it did not report (unknown, not $0).
	SpentThisRunUSD float64 `json:"spent_this_run_usd"`
	SpentUSD        float64 `json:"spent_usd"`
	UnreportedCost  int     `json:"unreported_cost_submissions"`
	// What is still estimated: the submissions that may be billed without
	// a reported cost, and the jobs still to submit. The estimates are null
	// when no price was read; Unpriced counts what they leave out.
	Uncosted              int      `json:"uncosted_submissions"`
	EstimatedUncostedUSD  *float64 `json:"estimated_uncosted_usd"`
	Remaining             int      `json:"remaining"`
	EstimatedRemainingUSD *float64 `json:"estimated_remaining_usd"`
	Unpriced              int      `json:"unpriced"`
	// Outcome is done (every job done: exit 0), incomplete (exit 1),
	// interrupted (exit 130) or error; Message says what is left to do.
	Outcome string `json:"outcome"`
	Message string `json:"message"`
}

// report says how the run ended — on stderr for a person, and with --json
// as one object on stdout — and picks the error that sets the exit code.
func (a *app) report(sum runner.Summary, err error, cl closing) error {
	c := sum.Counts
	if c != nil && !a.quiet {
		var parts []string
		for _, st := range lifecycle.States {
			if c[st] > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", st, c[st]))
			}
		}
		fmt.Fprintf(a.stderr, "%s · submitted %d this run · ledger %s · outputs %s\n", strings.Join(parts, ", "), sum.Submitted, cl.ledger, cl.out)
		fmt.Fprintln(a.stderr, spendLine(sum.Money))
	}
	if n := sum.Outside; n > 0 {
		fmt.Fprintf(a.stderr, "%s outside --job are at RunComfy or waiting for their files; `comfybatch run %s` without --job collects them\n", jobs(n), cl.manifest)
	}
	msg, err := a.outcome(sum, err, cl.submitOnly)
	if a.jsonOut && c != nil { // nil: stopped before it began, and the error says why
		if jerr := a.writeRunJSON(sum, err, msg, cl); jerr != nil && err == nil {
			err = jerr
		}
	}
	return err
}

// outcome is what is left to do, said on stderr, and the run's error.
func (a *app) outcome(sum runner.Summary, err error, submitOnly bool) (string, error) {
	c := sum.Counts
	if errors.Is(err, runner.ErrInterrupted) {
		msg := "interrupted: nothing was submitted" // before the run began (at the spending question)
		if c != nil {
			msg = fmt.Sprintf("interrupted: %s; run the same command again to collect them", atRunComfy(c))
		}
		fmt.Fprintln(a.stderr, msg)
		return msg, err
	}
	if err != nil {
		return err.Error(), err
	}
	var todo []string
	if n := c[lifecycle.Failed] + c[lifecycle.Cancelled]; n > 0 {
		todo = append(todo, fmt.Sprintf("%d failed or cancelled (see `comfybatch status --state failed,cancelled`; rerun with --retry-failed to resubmit them)", n))
	}
	if n := c[lifecycle.Unknown]; n > 0 {
		todo = append(todo, fmt.Sprintf("%d unknown: their submission was cut off and they may be running and billed; check your RunComfy dashboard, then rerun with --resubmit-unknown to submit them again", n))
	}
	if n := c[lifecycle.Pending]; n > 0 {
		switch {
		case sum.CostCapped > 0:
			todo = append(todo, fmt.Sprintf("%d pending, held back by --max-cost (%s spent or in flight; the next job would add %s): raise --max-cost and run again to continue",
				n, usd(sum.CommittedUSD), usd(sum.NextUSD)))
		case sum.Capped > 0:
			todo = append(todo, fmt.Sprintf("%d pending (left pending by --max-submissions); run again to continue", n))
		default:
			todo = append(todo, fmt.Sprintf("%d pending (not submitted); run again to continue", n))
		}
	}
	if n := sum.Sync.Deferred; n > 0 {
		todo = append(todo, fmt.Sprintf("%d changed while at RunComfy: their earlier request was collected first; run again to submit the new input", n))
	}
	if n := c[lifecycle.Completed]; n > 0 {
		todo = append(todo, fmt.Sprintf("%d completed but not downloaded; run again to download them", n))
	}
	if n := lifecycle.Count(c, lifecycle.State.InFlight); n > 0 && !submitOnly {
		todo = append(todo, atRunComfy(c)+"; run again to collect them")
	}
	if len(todo) == 0 {
		return "", nil
	}
	msg := "not every job is done: " + strings.Join(todo, "; ")
	fmt.Fprintln(a.stderr, msg)
	return msg, incompleteError{msg}
}

// spendLine is the closing summary's money: what RunComfy reported, this
// run and in all, and what is still only an estimate.
func spendLine(m runner.Money) string {
	line := fmt.Sprintf("spent %s this run, %s on this ledger in all, as RunComfy reported it", usd(m.SpentThisRunUSD), usd(m.SpentUSD))
	if m.Unreported > 0 {
		line += fmt.Sprintf(" (+ unknown: %s finished without a reported cost)", submissions(m.Unreported))
	}
	if m.Uncosted == 0 && m.Remaining == 0 {
		return line + "; nothing is still estimated"
	}
	var parts []string
	if m.Uncosted > 0 {
		p := submissions(m.Uncosted) + " without a reported cost"
		if m.Priced {
			p = "≈ " + usd(m.UncostedUSD) + " for " + p
		}
		parts = append(parts, p)
	}
	if m.Remaining > 0 {
		p := jobs(m.Remaining) + " to submit"
		if m.Priced {
			p = "≈ " + usd(m.RemainingUSD) + " for " + p
		}
		parts = append(parts, p)
	}
	switch {
	case !m.Priced:
		line += "; still estimated: " + strings.Join(parts, ", ") + " (no prices read, so no estimate)"
	default:
		line += "; still estimated ≈ " + usd(m.UncostedUSD+m.RemainingUSD) + ": " + strings.Join(parts, ", ")
		if m.Unpriced > 0 {
			line += fmt.Sprintf(" (%d without an estimate, left out)", m.Unpriced)
		}
	}
	return line
}

func (a *app) writeRunJSON(sum runner.Summary, err error, msg string, cl closing) error {
	m := sum.Money
	out := runJSON{Ledger: cl.ledger, Out: cl.out, Counts: map[string]int{}, Submitted: sum.Submitted,
		Selected: cl.selected, OutsideSelection: sum.Outside,
		SpentThisRunUSD: m.SpentThisRunUSD, SpentUSD: m.SpentUSD, UnreportedCost: m.Unreported,
		Uncosted: m.Uncosted, Remaining: m.Remaining, Unpriced: m.Unpriced, Message: msg}
	for _, st := range lifecycle.States {
		out.Counts[string(st)] = sum.Counts[st]
	}
	if m.Priced {
		u, r := m.UncostedUSD, m.RemainingUSD
		out.EstimatedUncostedUSD, out.EstimatedRemainingUSD = &u, &r
	}
	var inc incompleteError
	switch {
	case err == nil:
		out.Outcome = "done"
	case errors.Is(err, runner.ErrInterrupted):
		out.Outcome = "interrupted"
	case errors.As(err, &inc):
		out.Outcome = "incomplete"
	default:
		out.Outcome = "error"
	}
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(out)
}
