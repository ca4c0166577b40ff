package main

import (
	"bufio"
	"context"
	"fmt"
	"strings"

	"golang.org/x/term"

	"comfybatch/runner"
)

// defaultConfirmOver is the estimated spend above which a run on a terminal
// asks before its first submission: a few hundred clips, more than a trial
// and less than a night's mistake.
const defaultConfirmOver = 50.0

// needsConfirm decides whether a run asks before it submits: only a person
// at a terminal can answer (stdin and stderr both terminals), --yes has
// answered for them, --confirm-over 0 never asks, and only an estimate above
// the threshold is worth the question. The estimate is what the run can
// spend (runner.Spend.AtRisk): with --max-cost, no more than the cap
// leaves. Jobs without an estimate do not count: nothing says what they
// cost (plan says so).
func needsConfirm(s runner.Spend, over float64, yes, terminal bool) bool {
	return terminal && !yes && over > 0 && s.AtRisk() > over
}

// spendText is the question's first line.
func spendText(s runner.Spend) string {
	var b strings.Builder
	fmt.Fprintf(&b, "this run would submit %s, estimated at %s", newJobs(s.Jobs), usd(s.USD))
	if s.Unpriced > 0 {
		fmt.Fprintf(&b, " (%d of them without an estimate)", s.Unpriced)
	}
	if s.MaxCostUSD > 0 && s.AtRisk() < s.USD {
		fmt.Fprintf(&b, "; --max-cost %s stops it after about %s more (%s already spent or in flight)",
			usd(s.MaxCostUSD), usd(s.AtRisk()), usd(s.CommittedUSD))
	}
	return b.String()
}

func newJobs(n int) string {
	if n == 1 {
		return "1 new job"
	}
	return fmt.Sprintf("%d new jobs", n)
}

// confirmSpend is the run's Confirm: on a terminal it shows the estimate
// and asks; "y" or "yes" goes on, anything else (Enter included) submits
// nothing and ends the run with exit 1, the jobs pending, like a budget
// cap. Ctrl-C at the question is an interrupt (130).
func (a *app) confirmSpend(ctx context.Context, over float64, yes bool) func(runner.Spend) error {
	f, ok := a.stdin.(interface{ Fd() uintptr })
	terminal := ok && term.IsTerminal(int(f.Fd())) && a.isTerminal(a.stderr)
	return func(s runner.Spend) error {
		if !needsConfirm(s, over, yes, terminal) {
			return nil
		}
		fmt.Fprintf(a.stderr, "%s.\nSubmit them? [y/N] ", spendText(s))
		answer := make(chan string, 1)
		go func() {
			// Left reading if the run is interrupted: the process ends.
			line, _ := bufio.NewReader(a.stdin).ReadString('\n')
			answer <- line
		}()
		select {
		case <-ctx.Done():
			fmt.Fprintln(a.stderr)
			return runner.ErrInterrupted
		case line := <-answer:
			if a := strings.ToLower(strings.TrimSpace(line)); a == "y" || a == "yes" {
				return nil
			}
		}
		msg := fmt.Sprintf("not confirmed: nothing was submitted; run again and answer y, or pass --yes, or raise --confirm-over (now %s)", usd(over))
		fmt.Fprintln(a.stderr, msg)
		return incompleteError{msg}
	}
}
