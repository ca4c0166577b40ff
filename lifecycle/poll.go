package lifecycle

import (
	"encoding/json"
	"fmt"
	"time"
)

// PollAnswer is one answer to a poll of a job's result (or status).
type PollAnswer struct {
	// Failure describes the call when it failed; nil for a usable answer.
	Failure *Answer
	// Transient: the call failed in a way that goes away by itself (no
	// answer, a cut body, 408, 429, 5xx); the poller asks again later.
	Transient bool

	Status        string // verbatim
	QueuePosition *int
	Output        json.RawMessage
	Error         string          // the result's error, rendered
	Cost          json.RawMessage // as the server sent it
}

// Watch is what the poller remembers of one job during a run.
type Watch struct {
	Errors  int // answers in a row that said nothing about the job
	Missing int // of those, RunComfy's "request missing or expired" past the grace period
	Strange int // answers in a row whose status nobody documented
	// Transient counts the failed calls in a row that go away by
	// themselves; TransientFrom is the job's age at the first of them.
	Transient     int
	TransientFrom time.Duration
}

// TransientLimit is how long a job's polls may fail the way an outage fails
// (no answer, 5xx, 429) before the run stops polling it and leaves it in
// flight for the next run: long enough to wait out an outage, short enough
// that a run never waits on a job forever.
const TransientLimit = time.Hour

// PollVerdict says what the poller does after an answer.
type PollVerdict int

const (
	KeepPolling PollVerdict = iota // record Step if any, then poll again
	Settle                         // record Step; the job leaves the poller
	Park                           // stop polling this job in this run; it stays in flight
	StopAccount                    // the account cannot go on: stop the run
)

// PollDecision is what a poll answer means.
type PollDecision struct {
	Verdict PollVerdict
	Step    *Step // nil: nothing to record
	// Backoff asks for an extra wait before the next poll, growing with
	// its value (0 for none): answers that say nothing are not hammered.
	Backoff int
	Why     string // for the log, when the answer deserves a line
	Warn    string // a problem with the answer itself (an unreadable cost)
}

// ErrorTries is how many answers in a row that say nothing about a job (a
// 403, a body that does not parse, an error_code in a 2xx) a run accepts
// before it stops polling the job. Such an answer never fails the job: it
// may be running and billed, and --retry-failed would pay for it again. The
// job is parked in flight for the next run instead.
const ErrorTries = 3

// StrangeTries is how many polls in a row may report a status nobody
// documented before the job is parked in flight with a message: a model
// with a new status is not polled forever in silence, nor failed.
const StrangeTries = 30

// MissingGrace is how long after its submission a job's "request missing or
// expired" (404001) is taken as the API not having caught up with the POST
// rather than as the truth. RunComfy creates the request before it answers
// the POST, so a lag of more than seconds would be a fault of theirs; five
// minutes is far beyond any such lag and far shorter than the days a
// request is kept, after which 404001 is the truth (expired).
const MissingGrace = 5 * time.Minute

// Status classes.
var (
	queuedStatuses  = []string{"in_queue", "queued", "pending", "waiting", "starting"}
	runningStatuses = []string{"in_progress", "running", "processing"}
)

func oneOf(s string, list ...string) bool {
	for _, x := range list {
		if s == x {
			return true
		}
	}
	return false
}

// Poll decides what a poll answer means for a job in state cur (queued or
// running) submitted age ago, given what the poller remembered of it. It
// returns the decision and what to remember next.
func Poll(cur State, w Watch, a PollAnswer, age time.Duration) (PollDecision, Watch) {
	if a.Failure != nil {
		return pollFailed(cur, w, a, age)
	}
	w.Errors, w.Missing, w.Transient = 0, 0, 0
	status := normStatus(a.Status)
	switch {
	case status == "completed" || status == "succeeded":
		w.Strange = 0
		outs := Outputs(a.Output)
		cost, warn := ParseCost(a.Cost)
		if len(outs) == 0 {
			msg := a.Error
			if msg == "" {
				msg = "the job finished without any output"
			}
			return PollDecision{Verdict: Settle, Warn: warn, Step: &Step{To: Failed, Remote: a.Status, Error: msg, Detail: msg, Cost: cost}}, w
		}
		return PollDecision{Verdict: Settle, Warn: warn, Step: &Step{To: Completed, Remote: a.Status, Outputs: outs, Cost: cost,
			Detail: fmt.Sprintf("%d output(s)", len(outs))}}, w
	case status == "failed":
		w.Strange = 0
		msg := a.Error
		if msg == "" {
			msg = "the job failed at RunComfy without a message"
		}
		cost, warn := ParseCost(a.Cost)
		return PollDecision{Verdict: Settle, Warn: warn, Step: &Step{To: Failed, Remote: a.Status, Error: msg, Detail: msg, Cost: cost}}, w
	case status == "cancelled" || status == "canceled":
		w.Strange = 0
		return PollDecision{Verdict: Settle, Step: &Step{To: Cancelled, Remote: a.Status, Error: "cancelled at RunComfy", Detail: "cancelled at RunComfy"}}, w
	case oneOf(status, queuedStatuses...):
		w.Strange = 0
		return PollDecision{Verdict: KeepPolling, Step: &Step{To: Queued, Remote: a.Status, QueuePosition: a.QueuePosition}}, w
	case oneOf(status, runningStatuses...):
		w.Strange = 0
		return PollDecision{Verdict: KeepPolling, Step: &Step{To: Running, Remote: a.Status}}, w
	}
	// A status nobody documented: keep it verbatim, keep the state, poll
	// again with growing waits, and give up for this run after a while.
	w.Strange++
	step := &Step{To: cur, Remote: a.Status, QueuePosition: a.QueuePosition}
	if w.Strange >= StrangeTries {
		return PollDecision{Verdict: Park, Step: step,
			Why: fmt.Sprintf("RunComfy keeps answering status %q, which comfybatch does not know; the job stays %s and the next run polls it again", a.Status, cur)}, w
	}
	d := PollDecision{Verdict: KeepPolling, Step: step, Backoff: w.Strange}
	if w.Strange == 1 {
		d.Why = fmt.Sprintf("unknown remote status %q; polling on", a.Status)
	}
	return d, w
}

func pollFailed(cur State, w Watch, a PollAnswer, age time.Duration) (PollDecision, Watch) {
	c := *a.Failure
	switch {
	case c.Account():
		return PollDecision{Verdict: StopAccount, Why: "the account was refused"}, w
	case a.Transient:
		if w.Transient == 0 {
			w.TransientFrom = age
		}
		w.Transient++
		if age-w.TransientFrom >= TransientLimit {
			return PollDecision{Verdict: Park,
				Why: fmt.Sprintf("RunComfy has not answered this job's polls for %s (the last: %s); it stays %s and the next run polls it again", TransientLimit, describeMsg(c), cur)}, w
		}
		return PollDecision{Verdict: KeepPolling, Why: "poll failed; trying again"}, w
	case c.Code == CodeNotFound && age < MissingGrace:
		// Too soon to believe: the API may not have caught up with the
		// POST. Neither counted nor parked.
		w.Errors, w.Missing = 0, 0
		return PollDecision{Verdict: KeepPolling, Backoff: 1,
			Why: "RunComfy does not know the request yet; it was submitted moments ago, so polling on"}, w
	}
	w.Transient = 0
	w.Errors++
	if c.Code == CodeNotFound {
		w.Missing++
	} else {
		w.Missing = 0
	}
	msg := c.Message
	if msg == "" {
		msg = describe(c)
	}
	if w.Errors < ErrorTries {
		return PollDecision{Verdict: KeepPolling, Backoff: w.Errors, Why: "poll answered an error; trying again"}, w
	}
	if w.Missing >= ErrorTries {
		// Only RunComfy's own 404001, every time and long past the
		// submission: a bare 404 may come from anything in between.
		why := "the request is missing or expired at RunComfy: " + msg
		return PollDecision{Verdict: Settle, Step: &Step{To: Failed, Error: why, Detail: why}}, w
	}
	return PollDecision{Verdict: Park,
		Why: fmt.Sprintf("poll keeps answering an error (%s); the job may still be running and billed, so it stays %s and the next run polls it again", msg, cur)}, w
}

func describeMsg(a Answer) string {
	if a.Message != "" {
		return a.Message
	}
	return describe(a)
}
