package runner

import (
	"fmt"
	"strings"
	"testing"

	"comfybatch/lifecycle"
	"comfybatch/manifest"
	"comfybatch/store"
)

func TestMakePlan(t *testing.T) {
	known := map[string]store.Known{"gone-running": {State: lifecycle.Running, Fingerprint: "x"}, "gone-done": {State: lifecycle.Done, Fingerprint: "x"}}
	type want struct {
		action, withFlags lifecycle.Action
		group             string
	}
	cases := map[string]struct {
		known *store.Known // nil: not in the ledger
		want  want
	}{
		"new":           {nil, want{lifecycle.ActionSubmit, lifecycle.ActionSubmit, "new"}},
		"changed-done":  {&store.Known{State: lifecycle.Done, Fingerprint: "old"}, want{lifecycle.ActionSubmit, lifecycle.ActionSubmit, "changed"}},
		"changed-run":   {&store.Known{State: lifecycle.Running, Fingerprint: "old"}, want{lifecycle.ActionPoll, lifecycle.ActionPoll, "changed"}}, // collected first: paid for
		"pending":       {&store.Known{State: lifecycle.Pending}, want{lifecycle.ActionSubmit, lifecycle.ActionSubmit, "pending"}},
		"submitting":    {&store.Known{State: lifecycle.Submitting}, want{lifecycle.ActionNone, lifecycle.ActionSubmit, "unknown"}},
		"queued":        {&store.Known{State: lifecycle.Queued}, want{lifecycle.ActionPoll, lifecycle.ActionPoll, "in_flight"}},
		"running":       {&store.Known{State: lifecycle.Running}, want{lifecycle.ActionPoll, lifecycle.ActionPoll, "in_flight"}},
		"completed":     {&store.Known{State: lifecycle.Completed}, want{lifecycle.ActionDownload, lifecycle.ActionDownload, "completed"}},
		"done":          {&store.Known{State: lifecycle.Done}, want{lifecycle.ActionNone, lifecycle.ActionNone, "done"}},
		"failed":        {&store.Known{State: lifecycle.Failed}, want{lifecycle.ActionNone, lifecycle.ActionSubmit, "failed"}},
		"cancelled":     {&store.Known{State: lifecycle.Cancelled}, want{lifecycle.ActionNone, lifecycle.ActionSubmit, "cancelled"}},
		"unknown-state": {&store.Known{State: lifecycle.Unknown}, want{lifecycle.ActionNone, lifecycle.ActionSubmit, "unknown"}},
	}
	var src strings.Builder
	src.WriteString("model: m\njobs:\n")
	for id := range cases {
		fmt.Fprintf(&src, "  - {id: %s, input: {prompt: %s}}\n", id, id)
	}
	m, err := manifest.Parse("m.yaml", []byte(src.String()), manifest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range m.Jobs {
		id, fp := m.Jobs[i].ID, m.Jobs[i].Fingerprint()
		c := cases[id]
		if c.known != nil {
			k := *c.known
			if k.Fingerprint == "" {
				k.Fingerprint = fp
			}
			known[id] = k
		}
	}
	plain := MakePlan(m, known, PlanOptions{})
	flagged := MakePlan(m, known, PlanOptions{RetryFailed: true, ResubmitUnknown: true})
	for i, pj := range plain.Jobs {
		w := cases[pj.Job.ID].want
		if pj.Action != w.action || flagged.Jobs[i].Action != w.withFlags || pj.Group() != w.group {
			t.Errorf("%s: action %s / with flags %s / group %s; want %s / %s / %s",
				pj.Job.ID, pj.Action, flagged.Jobs[i].Action, pj.Group(), w.action, w.withFlags, w.group)
		}
	}
	if plain.Removed != 2 || plain.RemovedActive != 1 || plain.ChangedInFlight != 1 {
		t.Errorf("removed %d (active %d), changed in flight %d; want 2 (1), 1", plain.Removed, plain.RemovedActive, plain.ChangedInFlight)
	}
}
