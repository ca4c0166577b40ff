package runner

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"comfybatch/manifest"
	"comfybatch/runcomfy"
	"comfybatch/store"
)

func TestMakePlan(t *testing.T) {
	known := map[string]store.Known{"gone-running": {State: lifecycle.Running, Fingerprint: "x"}, "gone-done": {State: lifecycle.Done, Fingerprint: "x"}}
	type want struct {
		action, withFlags Action
		group             string
	}
	cases := map[string]struct {
		known *store.Known // nil: not in the ledger
		want  want
	}{
		"new":           {nil, want{ActionSubmit, ActionSubmit, "new"}},
		"changed-done":  {&store.Known{State: lifecycle.Done, Fingerprint: "old"}, want{ActionSubmit, ActionSubmit, "changed"}},
		"changed-run":   {&store.Known{State: lifecycle.Running, Fingerprint: "old"}, want{ActionPoll, ActionPoll, "changed"}}, // collected first: paid for
		"pending":       {&store.Known{State: lifecycle.Pending}, want{ActionSubmit, ActionSubmit, "pending"}},
		"submitting":    {&store.Known{State: lifecycle.Submitting}, want{ActionNone, ActionSubmit, "unknown"}},
		"queued":        {&store.Known{State: lifecycle.Queued}, want{ActionPoll, ActionPoll, "in_flight"}},
		"running":       {&store.Known{State: lifecycle.Running}, want{ActionPoll, ActionPoll, "in_flight"}},
		"completed":     {&store.Known{State: lifecycle.Completed}, want{ActionDownload, ActionDownload, "completed"}},
		"done":          {&store.Known{State: lifecycle.Done}, want{ActionNone, ActionNone, "done"}},
		"failed":        {&store.Known{State: lifecycle.Failed}, want{ActionNone, ActionSubmit, "failed"}},
		"cancelled":     {&store.Known{State: lifecycle.Cancelled}, want{ActionNone, ActionSubmit, "cancelled"}},
		"unknown-state": {&store.Known{State: lifecycle.Unknown}, want{ActionNone, ActionSubmit, "unknown"}},
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

func TestEstimateCost(t *testing.T) {
	price := func(usd float64, unit string) runcomfy.ModelInfo {
		return runcomfy.ModelInfo{BasePriceUSD: &usd, PriceUnit: unit}
	}
	cases := []struct {
		name  string
		input string
		info  runcomfy.ModelInfo
		usd   float64
		ok    bool
	}{
		{"per second", `{"duration":10}`, price(0.05, "second"), 0.5, true},
		{"per second, float duration", `{"duration":5.5}`, price(0.05, "second"), 0.275, true},
		{"per second, no duration", `{}`, price(0.05, "second"), 0, false},
		{"per second, duration as text", `{"duration":"5"}`, price(0.05, "second"), 0, false},
		{"per second, zero duration", `{"duration":0}`, price(0.05, "second"), 0, false},
		{"per second, duration null", `{"duration":null}`, price(0.05, "second"), 0, false},
		{"per minute", `{"duration":30}`, price(1.2, "minute"), 0.6, true},
		{"per output", `{}`, price(0.3, "output"), 0.3, true},
		{"per request, case and spaces", `{}`, price(0.3, " Request "), 0.3, true},
		{"unknown unit", `{"duration":5}`, price(0.01, "token"), 0, false},
		{"no price", `{"duration":5}`, runcomfy.ModelInfo{PriceUnit: "second"}, 0, false},
	}
	for _, c := range cases {
		usd, ok, why := EstimateCost(json.RawMessage(c.input), c.info)
		if ok != c.ok || (ok && (usd < c.usd-1e-9 || usd > c.usd+1e-9)) || ok == (why != "") {
			t.Errorf("%s: got %v %v %q, want %v %v", c.name, usd, ok, why, c.usd, c.ok)
		}
	}
}
