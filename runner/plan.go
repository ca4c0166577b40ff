package runner

import (
	"comfybatch/lifecycle"
	"comfybatch/manifest"
	"comfybatch/store"
)

// PlanOptions are the run flags that change what a run would do.
type PlanOptions = lifecycle.Flags

// PlannedJob is one manifest job and what a run would do with it.
type PlannedJob struct {
	Job    *manifest.Job
	Change lifecycle.Change // new, changed or unchanged, by fingerprint
	State  lifecycle.State  // its ledger state; "" when new
	Action lifecycle.Action
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
// ledger knows (nil or empty when there is no ledger yet). Each decision is
// lifecycle.Next, the function run acts on, so plan and run agree by
// construction.
func MakePlan(m *manifest.Manifest, known map[string]store.Known, o PlanOptions) Plan {
	var p Plan
	inManifest := make(map[string]bool, len(m.Jobs))
	p.Jobs = make([]PlannedJob, len(m.Jobs))
	for i := range m.Jobs {
		j := &m.Jobs[i]
		inManifest[j.ID] = true
		pj := PlannedJob{Job: j, Change: store.Classify(store.Spec{ID: j.ID, Fingerprint: j.Fingerprint()}, known)}
		if pj.Change != lifecycle.New {
			pj.State = known[j.ID].State
		}
		pj.Action = lifecycle.Next(pj.State, pj.Change, o)
		if pj.Change == lifecycle.Returned && pj.State.Replaceable() {
			// Sync puts it back in the earlier submission's state first.
			pj.Action = lifecycle.NextReturned(known[j.ID].Returns[j.Fingerprint()], o)
		}
		if pj.Change == lifecycle.Changed && pj.State.Awaited() {
			p.ChangedInFlight++
		}
		p.Jobs[i] = pj
	}
	for id, k := range known {
		if !inManifest[id] {
			p.Removed++
			if k.State.Awaited() {
				p.RemovedActive++
			}
		}
	}
	return p
}

// Group is the plan's summary key for a job: its change when it is new or
// changed, else the ledger state that decides what a run does with it.
// Submitting is grouped with unknown, which is what a run makes of it.
func (pj PlannedJob) Group() string {
	if pj.Change != lifecycle.Unchanged {
		return string(pj.Change)
	}
	switch {
	case pj.State.InFlight():
		return "in_flight"
	case pj.State == lifecycle.Submitting:
		return string(lifecycle.Unknown)
	}
	return string(pj.State)
}
