package main

import (
	"strings"
	"testing"

	"comfybatch/runner"
)

func TestNeedsConfirm(t *testing.T) {
	big := runner.Spend{Jobs: 100000, USD: 37500}
	tests := []struct {
		name          string
		s             runner.Spend
		over          float64
		yes, terminal bool
		want          bool
	}{
		{"over the threshold, at a terminal", big, 50, false, true, true},
		{"--yes answers", big, 50, true, true, false},
		{"off a terminal, never", big, 50, false, false, false},
		{"--confirm-over 0 never asks", big, 0, false, true, false},
		{"under the threshold", runner.Spend{Jobs: 3, USD: 0.75}, 50, false, true, false},
		{"at the threshold", runner.Spend{Jobs: 200, USD: 50}, 50, false, true, false},
		{"--max-cost leaves less than the threshold", runner.Spend{Jobs: 100000, USD: 37500, MaxCostUSD: 40}, 50, false, true, false},
		{"--max-cost leaves more than the threshold", runner.Spend{Jobs: 100000, USD: 37500, MaxCostUSD: 500}, 50, false, true, true},
		{"--max-cost mostly used already", runner.Spend{Jobs: 100000, USD: 37500, MaxCostUSD: 500, CommittedUSD: 480}, 50, false, true, false},
		{"no estimate at all", runner.Spend{Jobs: 100000, Unpriced: 100000}, 50, false, true, false},
	}
	for _, tt := range tests {
		if got := needsConfirm(tt.s, tt.over, tt.yes, tt.terminal); got != tt.want {
			t.Errorf("%s: needsConfirm = %v, want %v", tt.name, got, tt.want)
		}
	}
	if got := spendText(runner.Spend{Jobs: 100000, USD: 37500, Unpriced: 2, MaxCostUSD: 500, CommittedUSD: 100}); got !=
		"this run would submit 100000 new jobs, estimated at $37500.00 (2 of them without an estimate); --max-cost $500.00 stops it after about $400.00 more ($100.00 already spent or in flight)" {
		t.Errorf("spendText = %q", got)
	}
}

// TestConfirmOnTerminal: on a terminal, a run whose new submissions are
// estimated above --confirm-over shows the estimate and asks before the
// first submission: y goes on, n submits nothing (exit 1, jobs pending);
// --yes and --confirm-over 0 never ask, and off a terminal it never asks.
func TestConfirmOnTerminal(t *testing.T) {
	t.Parallel()
	const question = "Submit them? [y/N]"
	ask := []string{"--fake", "--confirm-over", "0.5"} // plan estimates the quickstart at $1.00

	t.Run("yes", func(t *testing.T) {
		t.Parallel()
		s := startOnTerminal(t, noToken, 100, append([]string{"run", copyExample(t, "quickstart.yaml")}, ask...)...)
		s.waitFor(question)
		// The estimate is plan's.
		plan := runBinary(t, noToken, "plan", copyExample(t, "quickstart.yaml"), "--fake")
		if !strings.Contains(plan.stdout, "estimated cost: $1.00 for 3 jobs") {
			t.Fatalf("plan's estimate changed; this test expects $1.00:\n%s", plan.stdout)
		}
		if !strings.Contains(s.output(), "this run would submit 3 new jobs, estimated at $1.00") {
			t.Errorf("the question does not show the estimate:\n%s", s.output())
		}
		if strings.Contains(s.output(), "settled") {
			t.Errorf("the run went on before the answer:\n%s", s.output())
		}
		s.typeKeys("y\r")
		if out, code := s.wait(); code != 0 || !strings.Contains(out, "submitted 3 this run") {
			t.Errorf("exit %d after yes:\n%s", code, out)
		}
	})
	t.Run("no", func(t *testing.T) {
		t.Parallel()
		manifest := copyExample(t, "quickstart.yaml")
		s := startOnTerminal(t, noToken, 100, append([]string{"run", manifest}, ask...)...)
		s.waitFor(question)
		s.typeKeys("n\r")
		out, code := s.wait()
		if code != exitIncomplete || !strings.Contains(out, "not confirmed: nothing was submitted") {
			t.Errorf("exit %d after no, want %d and a message:\n%s", code, exitIncomplete, out)
		}
		st := status(t, manifest)
		if st.Counts["pending"] != 3 {
			t.Errorf("counts after no: %v, want 3 pending", st.Counts)
		}
		for _, j := range st.Jobs {
			if j.RequestID != "" {
				t.Errorf("job %s was submitted (%s)", j.ID, j.RequestID)
			}
		}
	})
	for _, c := range []struct {
		name string
		args []string
	}{
		{"--yes", []string{"--yes"}},
		{"--confirm-over 0", []string{"--confirm-over", "0"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			args := append(append([]string{"run", copyExample(t, "quickstart.yaml")}, ask...), c.args...)
			out, code := startOnTerminal(t, noToken, 100, args...).wait()
			if code != 0 || strings.Contains(out, question) {
				t.Errorf("exit %d, or asked:\n%s", code, out)
			}
		})
	}
	t.Run("off a terminal", func(t *testing.T) {
		t.Parallel()
		r := runBinary(t, noToken, append([]string{"run", copyExample(t, "quickstart.yaml")}, ask...)...)
		if r.code != 0 || strings.Contains(r.stderr, question) {
			t.Errorf("exit %d, or asked:\n%s", r.code, r.stderr)
		}
	})
}
