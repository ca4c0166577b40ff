// Package lifecycle owns a job's life: its states, the transitions allowed
// between them (the README's state diagram, as data), and the pure decisions
// of what an answer from RunComfy means for a job — a submit answer, a poll
// answer, a cancel answer — and of what a run does next with a job in a
// given state. It imports nothing else of comfybatch, so every rule that
// keeps a job from being paid twice or lost is here, in one place, and
// table-tested against the answer shapes RunComfy's own clients know.
package lifecycle

import "strings"

// State is a job's place in its life.
type State string

const (
	Pending    State = "pending"    // not at RunComfy; a run submits it
	Submitting State = "submitting" // its POST is leaving; committed before it does
	Queued     State = "queued"     // at RunComfy with a saved request id, waiting
	Running    State = "running"    // at RunComfy, being generated
	Completed  State = "completed"  // finished at RunComfy, outputs not all saved yet
	Done       State = "done"       // every output saved and verified
	Failed     State = "failed"     // RunComfy rejected it or it ended without output
	Cancelled  State = "cancelled"  // RunComfy cancelled it
	Unknown    State = "unknown"    // a POST whose outcome nobody can know: maybe billed
)

// States lists every state in the order a person reads a run's progress.
var States = []State{Pending, Submitting, Queued, Running, Completed, Done, Failed, Cancelled, Unknown}

// Valid reports whether st is one of States.
func (st State) Valid() bool {
	for _, s := range States {
		if s == st {
			return true
		}
	}
	return false
}

// InFlight reports a job with a request at RunComfy that has not finished.
func (st State) InFlight() bool { return st == Queued || st == Running }

// Awaited reports a job with a request at RunComfy whose result is still to
// be collected: in flight, or completed and not yet downloaded. It has been
// paid for, so a change of its input waits until it is collected.
func (st State) Awaited() bool { return st.InFlight() || st == Completed }

// Cancellable reports a job RunComfy can cancel: one still in its queue (a
// running job answers not_cancellable, and is billed).
func (st State) Cancellable() bool { return st == Queued }

// Outstanding reports a job whose request is, or may be, at RunComfy and
// unfinished: in flight, or in the middle of its POST.
func (st State) Outstanding() bool { return st.InFlight() || st == Submitting }

// Count adds up the jobs of counts whose state satisfies is.
func Count(counts map[State]int, is func(State) bool) int {
	n := 0
	for st, k := range counts {
		if is(st) {
			n += k
		}
	}
	return n
}

// Settled reports a job that needs nothing more from a run without flags.
func (st State) Settled() bool {
	return st == Done || st == Failed || st == Cancelled || st == Unknown
}

// Replaceable reports whether a changed manifest may replace the job's input
// now: not while a paid request is still to be collected, and not in the
// middle of a POST (a run turns those into unknown before it syncs).
func (st State) Replaceable() bool { return !st.Awaited() && st != Submitting }

// Edge is one allowed transition and what it means.
type Edge struct {
	From, To State
	Means    string
	// BySync: only bringing the ledger in line with the manifest takes
	// this edge (an input changed), never an answer from RunComfy.
	BySync bool
}

// Edges is the state diagram. No state changes anywhere in comfybatch
// except along one of these; the ledger refuses any other.
var Edges = append(baseEdges, returnEdges()...)

var baseEdges = []Edge{
	{From: Pending, To: Submitting, Means: "the POST is about to leave: committed before it does"},
	{From: Failed, To: Submitting, Means: "--retry-failed submits it again"},
	{From: Cancelled, To: Submitting, Means: "--retry-failed submits it again"},
	{From: Unknown, To: Submitting, Means: "--resubmit-unknown submits it again"},

	{From: Submitting, To: Queued, Means: "RunComfy answered with a request id, saved at once"},
	{From: Submitting, To: Pending, Means: "the answer proves no job was created (not sent, 429, account refused)"},
	{From: Submitting, To: Failed, Means: "RunComfy rejected the input (4xx)"},
	{From: Submitting, To: Unknown, Means: "the outcome cannot be known (5xx, timeout, no request id, cut off by a crash)"},

	{From: Queued, To: Queued, Means: "polled: still queued (position or remote status changed, or a cancel was refused)"},
	{From: Queued, To: Running, Means: "polled: started"},
	{From: Running, To: Queued, Means: "polled: back in the queue"},
	{From: Running, To: Running, Means: "polled: still running (remote status changed, or a cancel was refused)"},
	{From: Queued, To: Completed, Means: "finished with outputs; result saved"},
	{From: Running, To: Completed, Means: "finished with outputs; result saved"},
	{From: Queued, To: Failed, Means: "failed at RunComfy, finished without output, or its request is gone"},
	{From: Running, To: Failed, Means: "failed at RunComfy, finished without output, or its request is gone"},
	{From: Queued, To: Cancelled, Means: "cancelled at RunComfy"},
	{From: Running, To: Cancelled, Means: "cancelled at RunComfy"},

	{From: Completed, To: Completed, Means: "output URLs refreshed after a saved one expired"},
	{From: Completed, To: Done, Means: "every output saved and verified"},
	{From: Done, To: Completed, Means: "a saved output went missing on disk: download it again"},

	{From: Pending, To: Pending, Means: "input changed before it was submitted", BySync: true},
	{From: Done, To: Pending, Means: "input changed: the new input is submitted, the old result kept in history", BySync: true},
	{From: Failed, To: Pending, Means: "input changed", BySync: true},
	{From: Cancelled, To: Pending, Means: "input changed", BySync: true},
	{From: Unknown, To: Pending, Means: "input changed", BySync: true},
}

// returnEdges are the edges of a job whose input changes back to that of an
// earlier submission: it takes up that submission's state again (Returned)
// instead of being submitted as new, from any state a changed input may
// replace.
func returnEdges() []Edge {
	var out []Edge
	for _, from := range States {
		if !from.Replaceable() {
			continue
		}
		for _, to := range []State{Queued, Completed, Done, Failed, Cancelled, Unknown} {
			if edgeIn(baseEdges, from, to) {
				continue // done → completed: a file went missing; the same move
			}
			out = append(out, Edge{From: from, To: to, BySync: true,
				Means: "input changed back to that of an earlier submission: its state is the job's again (nothing is submitted)"})
		}
	}
	return out
}

func edgeIn(edges []Edge, from, to State) bool {
	for _, e := range edges {
		if e.From == from && e.To == to {
			return true
		}
	}
	return false
}

// Allowed reports whether a job may move from one state to another.
func Allowed(from, to State) bool {
	for _, e := range Edges {
		if e.From == from && e.To == to {
			return true
		}
	}
	return false
}

// BySync reports an edge only the ledger's sync with the manifest takes.
func BySync(from, to State) bool {
	for _, e := range Edges {
		if e.From == from && e.To == to {
			return e.BySync
		}
	}
	return false
}

// Into lists the states a job may enter to from.
func Into(to State) []State {
	var from []State
	for _, e := range Edges {
		if e.To == to {
			from = append(from, e.From)
		}
	}
	return from
}

// Step is a decided transition: the state a job goes to and what the ledger
// records with it. Fields that do not apply to the transition are ignored.
type Step struct {
	To     State
	Detail string // the event's text, for the job's history

	Remote        string   // the server's status, verbatim ("" keeps the recorded one)
	QueuePosition *int     // while queued
	RequestID     string   // Submitting → Queued
	Outputs       []string // → Completed: what to save (URLs, data: URLs, text)
	Cost          *float64 // the cost RunComfy reported; nil = unknown
	Error         string   // → Failed, Pending, Unknown: the reason
}

// normStatus is how every client of RunComfy compares statuses: trimmed and
// lower-cased.
func normStatus(s string) string { return strings.ToLower(strings.TrimSpace(s)) }
