package runner

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"comfybatch/manifest"
	"comfybatch/runcomfy"
	"comfybatch/store"
)

// Action is what a run would do with a job.
type Action string

const (
	ActionSubmit   Action = "submit"   // POST it: new, changed, or never accepted
	ActionPoll     Action = "poll"     // it is at RunComfy: collect it
	ActionDownload Action = "download" // finished: fetch its outputs
	ActionNone     Action = "none"     // settled, or left alone without a flag
)

// PlanOptions are the run flags that change what a run would do.
type PlanOptions struct {
	RetryFailed     bool // --retry-failed
	ResubmitUnknown bool // --resubmit-unknown
}

// PlannedJob is one manifest job and what a run would do with it.
type PlannedJob struct {
	Job    *manifest.Job
	Change store.Change // new, changed or unchanged, by fingerprint
	State  store.State  // its ledger state; "" when new
	Action Action
}

// Plan is what `comfybatch run` would do, worked out without doing it.
type Plan struct {
	Jobs []PlannedJob // in manifest order
	// Removed counts ledger jobs no longer in the manifest; RemovedActive
	// those of them in flight or completed, which a run still collects
	// because they were paid for.
	Removed, RemovedActive int
	// ChangedInFlight counts changed jobs whose earlier request is still to
	// be collected: a run collects it first (it is paid for), and the run
	// after that submits the new input (store.SyncReport.Deferred).
	ChangedInFlight int
}

// MakePlan decides, for each job of m, what a run would do given what the
// ledger knows (nil or empty when there is no ledger yet). It mirrors Run:
// Sync sends new and changed jobs to pending, a job caught mid-submission
// becomes unknown, and pending jobs (plus failed, cancelled and unknown ones
// when the flags say so) are submitted.
func MakePlan(m *manifest.Manifest, known map[string]store.Known, o PlanOptions) Plan {
	var p Plan
	inManifest := make(map[string]bool, len(m.Jobs))
	p.Jobs = make([]PlannedJob, len(m.Jobs))
	for i := range m.Jobs {
		j := &m.Jobs[i]
		inManifest[j.ID] = true
		pj := PlannedJob{Job: j, Change: store.Classify(store.Spec{ID: j.ID, Fingerprint: j.Fingerprint()}, known)}
		if pj.Change != store.New {
			pj.State = known[j.ID].State
		}
		switch {
		case pj.Change == store.Changed && pj.State.Awaited():
			pj.Action = action(pj.State, o)
			p.ChangedInFlight++
		case pj.Change != store.Unchanged:
			pj.Action = ActionSubmit
		default:
			pj.Action = action(pj.State, o)
		}
		p.Jobs[i] = pj
	}
	for id, k := range known {
		if !inManifest[id] {
			p.Removed++
			if k.State.InFlight() || k.State == store.Completed {
				p.RemovedActive++
			}
		}
	}
	return p
}

// action is what a run does with an unchanged job in state st.
func action(st store.State, o PlanOptions) Action {
	switch st {
	case store.Pending:
		return ActionSubmit
	case store.Queued, store.Running:
		return ActionPoll
	case store.Completed:
		return ActionDownload
	case store.Failed, store.Cancelled:
		if o.RetryFailed {
			return ActionSubmit
		}
	case store.Unknown, store.Submitting: // a run turns submitting into unknown first
		if o.ResubmitUnknown {
			return ActionSubmit
		}
	}
	return ActionNone
}

// Group is the plan's summary key for a job: its change when it is new or
// changed, else the ledger state that decides what a run does with it.
// Submitting is grouped with unknown, which is what a run makes of it.
func (pj PlannedJob) Group() string {
	if pj.Change != store.Unchanged {
		return string(pj.Change)
	}
	switch pj.State {
	case store.Queued, store.Running:
		return "in_flight"
	case store.Submitting:
		return string(store.Unknown)
	}
	return string(pj.State)
}

// EstimateCost prices one job at a model's price, as GET /v1/models/{id}
// gives it. It returns ok=false and why when the price cannot be worked out.
//
// A "second" (or "minute") price is per second of the video asked for: the
// job's duration input. A job without one gets whatever default the server
// applies, which comfybatch does not guess, so its cost is unknown. A price
// per "output", "request", "job", "run", "generation", "image", "video" or
// "call" is charged once per job: each job is one request for one output.
// Any other unit is reported as unknown rather than guessed.
func EstimateCost(input json.RawMessage, info runcomfy.ModelInfo) (usd float64, ok bool, why string) {
	if info.BasePriceUSD == nil {
		return 0, false, "the API gave no base_price_usd"
	}
	base := *info.BasePriceUSD
	switch unit := strings.ToLower(strings.TrimSpace(info.PriceUnit)); unit {
	case "second", "seconds", "sec", "s", "minute", "minutes", "min":
		d, ok := duration(input)
		if !ok {
			return 0, false, "no duration in the input"
		}
		if strings.HasPrefix(unit, "m") {
			d /= 60
		}
		return base * d, true, ""
	case "output", "request", "job", "run", "generation", "image", "video", "call":
		return base, true, ""
	default:
		return 0, false, fmt.Sprintf("price unit %q is not one comfybatch can estimate", info.PriceUnit)
	}
}

// duration reads a job's duration input, in seconds: a JSON number above 0.
func duration(input json.RawMessage) (float64, bool) {
	var v struct{ Duration json.RawMessage }
	if json.Unmarshal(input, &v) != nil {
		return 0, false
	}
	d, err := strconv.ParseFloat(string(v.Duration), 64)
	return d, err == nil && d > 0 && !math.IsInf(d, 0)
}
