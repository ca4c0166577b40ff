package lifecycle

import (
	"testing"
	"time"
)

// FuzzDecisions feeds every decision arbitrary answers and holds it to the
// table and to the rules that keep a job from being paid twice:
//
//   - a submit decision is a transition from submitting; it is pending only
//     when the answer proves no job was created (or the account refused);
//     an answer with a request id is always queued with that id;
//   - a poll decision's step is a transition from the job's state; a job
//     fails without a failed or empty finished answer only on 404001 past
//     the grace period;
//   - a cancel decision is a transition, and cancels only on a cancelled
//     status or (with none) outcome.
func FuzzDecisions(f *testing.F) {
	f.Add(false, 503, 0, "", "completed", `{"video":"https://a/b"}`, `0.25`, "cancelled", "", int64(0), uint8(0))
	f.Add(true, 0, 0, "r", "IN_QUEUE", `{}`, `"x"`, "", "not_cancellable", int64(time.Hour), uint8(2))
	f.Add(false, 404, 404001, "", "", `null`, ``, "in_queue", "cancelled", int64(time.Hour), uint8(1))
	f.Fuzz(func(t *testing.T, notSent bool, status, code int, requestID, remote, output, cost, cancelStatus, outcome string, age int64, flags uint8) {
		a := Answer{NotSent: notSent, HTTPStatus: status, Code: code}
		d := Submit(a, requestID)
		if !Allowed(Submitting, d.To) || BySync(Submitting, d.To) {
			t.Fatalf("Submit → %s", d.To)
		}
		if requestID != "" && (d.To != Queued || d.RequestID != requestID) {
			t.Fatalf("request id %q lost: %+v", requestID, d)
		}
		if d.To == Pending && !SubmitRetryable(a, requestID) && !d.StopAccount {
			t.Fatalf("pending without proof: %+v", a)
		}
		for _, cur := range []State{Queued, Running} {
			for _, failure := range []*Answer{nil, &a} {
				pa := PollAnswer{Failure: failure, Status: remote, Output: []byte(output), Cost: []byte(cost)}
				pd, _ := Poll(cur, Watch{Errors: int(flags % 4), Missing: int(flags % 4)}, pa, time.Duration(age))
				if pd.Step == nil {
					continue
				}
				if !Allowed(cur, pd.Step.To) || BySync(cur, pd.Step.To) {
					t.Fatalf("Poll(%s) → %s", cur, pd.Step.To)
				}
				if pd.Step.To == Failed && failure != nil && (code != CodeNotFound || time.Duration(age) < MissingGrace) {
					t.Fatalf("failed on an answer that says nothing of the job: %+v", a)
				}
				if pd.Step.To == Completed && len(pd.Step.Outputs) == 0 {
					t.Fatalf("completed without outputs")
				}
				if c := pd.Step.Cost; c != nil && *c < 0 {
					t.Fatalf("negative cost kept")
				}
			}
			cd := Cancel(cur, CancelAnswer{Status: cancelStatus, Outcome: outcome})
			if cd.Record && (!Allowed(cur, cd.Step.To) || BySync(cur, cd.Step.To)) {
				t.Fatalf("Cancel(%s) → %s", cur, cd.Step.To)
			}
			s, o := normStatus(cancelStatus), normStatus(outcome)
			confirmed := s == "cancelled" || s == "canceled" || s == "" && (o == "cancelled" || o == "canceled")
			if (cd.Step.To == Cancelled) != confirmed {
				t.Fatalf("Cancel(%q, %q) → %s", cancelStatus, outcome, cd.Step.To)
			}
		}
		f := Flags{RetryFailed: flags&1 != 0, ResubmitUnknown: flags&2 != 0, SubmitOnly: flags&4 != 0}
		for _, st := range States {
			for _, ch := range []Change{Unchanged, Changed} {
				if Next(st, ch, f) == ActionSubmit && ch == Unchanged && st != Pending {
					if !(st == Failed || st == Cancelled) || !f.RetryFailed {
						if !(st == Unknown || st == Submitting) || !f.ResubmitUnknown {
							t.Fatalf("Next(%s) submits without a flag", st)
						}
					}
				}
			}
		}
	})
}
