package lifecycle

// Action is what a run does with a job.
type Action string

const (
	ActionSubmit   Action = "submit"   // POST it: new, changed, or never accepted
	ActionPoll     Action = "poll"     // it is at RunComfy: collect it
	ActionDownload Action = "download" // finished: save its outputs
	ActionReuse    Action = "reuse"    // its input returned to one already paid for: that result is reused
	ActionNone     Action = "none"     // settled, or left alone without a flag
)

// Flags are the run flags that change what a run does with a job.
type Flags struct {
	RetryFailed     bool // --retry-failed: failed and cancelled jobs are submitted again
	ResubmitUnknown bool // --resubmit-unknown: unknown jobs are submitted again
	SubmitOnly      bool // --submit-only: jobs in flight are left to a later run
}

// Change says how a manifest job relates to its ledger record.
type Change string

const (
	New       Change = "new"       // not in the ledger
	Unchanged Change = "unchanged" // same fingerprint
	Changed   Change = "changed"   // fingerprint differs from what was recorded
	// Returned: the fingerprint differs from the current record but equals
	// that of an earlier submission of the job, which may have been paid
	// for: that submission's state is the job's again (Returned).
	Returned Change = "returned"
)

// Next is what a run does with a job in state st ("" for a job the ledger
// does not have yet) whose manifest entry relates to the record as ch.
// `run` acts on it and `plan` reports it, so the two agree by construction.
//
// A changed job whose earlier request is still to be collected is collected
// first: it was paid for. The run after that submits the new input.
func Next(st State, ch Change, f Flags) Action {
	if st == Submitting {
		st = Recover().To // what a run makes of it before anything else
	}
	if ch == New || (ch == Changed && st.Replaceable()) {
		return ActionSubmit
	}
	if ch == Returned && st.Replaceable() {
		return ActionReuse // NextReturned says more, given where it returns to
	}
	switch st {
	case Pending:
		return ActionSubmit
	case Queued, Running:
		if f.SubmitOnly {
			return ActionNone
		}
		return ActionPoll
	case Completed:
		return ActionDownload
	case Failed, Cancelled:
		if f.RetryFailed {
			return ActionSubmit
		}
	case Unknown:
		if f.ResubmitUnknown {
			return ActionSubmit
		}
	}
	return ActionNone
}

// SubmitFrom lists the states whose unchanged jobs a run submits under f:
// the ledger query behind "the jobs to submit" and their budget.
func SubmitFrom(f Flags) []State { return statesFor(ActionSubmit, f) }

// CollectFrom lists the states a run collects under f, most urgent first:
// completed jobs (their output URLs expire), then jobs in flight.
func CollectFrom(f Flags) []State {
	return append(statesFor(ActionDownload, f), statesFor(ActionPoll, f)...)
}

func statesFor(a Action, f Flags) []State {
	var out []State
	for _, st := range States {
		if st != Submitting && Next(st, Unchanged, f) == a {
			out = append(out, st)
		}
	}
	return out
}

// Recover is what becomes of a job found in submitting when a run starts: its
// process died mid-POST, so it may be running and billed at RunComfy, and its
// request id was never saved.
func Recover() Step {
	const why = "submission was cut off before its request id was saved; it may be running and billed"
	return Step{To: Unknown, Error: why, Detail: why}
}

// ReturnTo is the state a job takes up again when its input changes back to
// that of an earlier submission, from what the ledger recorded of it: its
// outcome ("" while none was recorded) and whether its request id was
// saved. ok is false only for a submission that proved no job was created
// (pending): nothing was paid, and the job is submitted like any changed
// job. Everything else was, or may have been, paid for, and resubmitting it
// without a flag would pay twice.
func ReturnTo(outcome string, hasRequest bool) (st State, ok bool) {
	switch State(outcome) {
	case Pending:
		return "", false
	case Completed:
		return Completed, true
	case Failed:
		return Failed, true
	case Cancelled:
		return Cancelled, true
	case "":
		if hasRequest {
			return Queued, true // its request is still to be collected
		}
	}
	return Unknown, true // cut off, or an outcome nobody recorded
}

// NextReturned is what a run does with a job whose input returned to that
// of an earlier submission, which put it back in state to.
func NextReturned(to State, f Flags) Action {
	if to == Completed || to == Done {
		return ActionReuse
	}
	return Next(to, Unchanged, f)
}
