package lifecycle

// CancelAnswer is the answer to a cancel request.
type CancelAnswer struct {
	Failure *Answer // describes the call when it failed; nil for a usable answer
	Status  string  // verbatim
	Outcome string  // verbatim; may be absent
}

// Cancel outcomes as `comfybatch cancel` reports them.
const (
	OutcomeCancelled      = "cancelled"       // RunComfy cancelled it: settled
	OutcomeNotCancellable = "not_cancellable" // already running or finished: it will be billed
	OutcomeRequested      = "requested"       // asked, not confirmed: the next run polls it
	OutcomeNotFound       = "not_found"       // RunComfy no longer knows the request
	OutcomeError          = "error"           // no usable answer: try again
)

// CancelDecision is what a cancel answer means for a job in state cur.
type CancelDecision struct {
	Outcome string
	Step    Step // To is Cancelled, or cur with a note in the history
	Record  bool // whether Step goes to the ledger
	Detail  string
}

// Cancel decides what a cancel answer means. Like RunComfy's CLI it reads
// the job's status first and the outcome only when the status says
// nothing: only a cancelled status (either spelling, any case) — or, with no
// status, a cancelled outcome — settles the job as cancelled. Anything else
// leaves it in flight for the next run to poll: marking a job cancelled that
// still runs would let --retry-failed pay for it twice.
func Cancel(cur State, a CancelAnswer) CancelDecision {
	if c := a.Failure; c != nil {
		if c.Code == CodeNotFound || c.HTTPStatus == 404 {
			return CancelDecision{Outcome: OutcomeNotFound,
				Detail: "RunComfy does not know this request (expired?); the next run polls it and records what RunComfy says"}
		}
		msg := c.Message
		if msg == "" {
			msg = describe(*c)
		}
		return CancelDecision{Outcome: OutcomeError, Detail: msg}
	}
	status, outcome := normStatus(a.Status), normStatus(a.Outcome)
	cancelled := func(s string) bool { return s == "cancelled" || s == "canceled" }
	keep := func(o, note, detail string) CancelDecision {
		return CancelDecision{Outcome: o, Record: true, Detail: detail,
			Step: Step{To: cur, Remote: a.Status, Detail: note}}
	}
	switch {
	case cancelled(status), status == "" && cancelled(outcome):
		return CancelDecision{Outcome: OutcomeCancelled, Record: true,
			Detail: "cancelled; `run --retry-failed` submits it again",
			Step:   Step{To: Cancelled, Remote: firstNonEmpty(a.Status, a.Outcome), Error: "cancelled by `comfybatch cancel`", Detail: "cancelled by `comfybatch cancel`"}}
	case outcome == "not_cancellable":
		return keep(OutcomeNotCancellable, cancelNote("refused", a),
			"already running at RunComfy: it will finish and be billed; the next run collects it")
	case status == "" && outcome == "":
		return keep(OutcomeRequested, "cancel asked; RunComfy's answer said nothing",
			"RunComfy's answer did not say whether the job was cancelled; the next run polls it and records how it ends")
	default:
		return keep(OutcomeRequested, cancelNote("asked, not confirmed", a),
			"RunComfy took the request but the job is not cancelled yet ("+firstNonEmpty(a.Status, a.Outcome)+"); the next run polls it and records how it ends")
	}
}

func cancelNote(what string, a CancelAnswer) string {
	s := "cancel " + what
	if a.Outcome != "" {
		s += ": " + a.Outcome
	}
	if a.Status != "" {
		s += " (remote status " + a.Status + ")"
	}
	return s
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}
