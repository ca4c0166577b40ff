package runner

import (
	"errors"
	"testing"

	"comfybatch/lifecycle"
	"comfybatch/runcomfy/runcomfytest"
)

// TestConfirmSeesTheRunsSpend: Confirm is asked once, before any
// submission, with the jobs this run would submit (within
// --max-submissions, jobs already done left out) and their estimate; an
// error from it submits nothing.
func TestConfirmSeesTheRunsSpend(t *testing.T) {
	e := newEnv(t, runcomfytest.Config{CostUSD: 0.25})
	m := pricedManifest(t, 10, 5) // $0.25 each
	if _, err := e.run(m, func(c *Config) { c.MaxSubmissions = 3 }); err != nil {
		t.Fatal(err)
	}

	var asked []Spend
	no := errors.New("no")
	sum, err := e.run(m, func(c *Config) {
		c.MaxSubmissions, c.MaxCost = 5, 100
		c.Confirm = func(s Spend) error {
			asked = append(asked, s)
			if created := e.srv.Stats().Created; created != 3 {
				t.Errorf("asked after a submission: the fake created %d jobs", created)
			}
			return no
		}
	})
	if !errors.Is(err, no) {
		t.Fatalf("err = %v, want Confirm's", err)
	}
	want := Spend{Jobs: 5, USD: 1.25, MaxCostUSD: 100, CommittedUSD: 0.75}
	if len(asked) != 1 || asked[0] != want {
		t.Fatalf("Confirm asked with %+v, want once with %+v", asked, want)
	}
	if sum.Submitted != 0 || e.srv.Stats().Created != 3 {
		t.Errorf("submitted after a refusal: %+v, fake created %d", sum, e.srv.Stats().Created)
	}

	// Nothing to submit: not asked at all.
	asked = nil
	if _, err := e.run(m, func(c *Config) { c.Confirm = func(s Spend) error { asked = append(asked, s); return nil } }); err != nil {
		t.Fatal(err)
	}
	if len(asked) != 1 || asked[0].Jobs != 7 {
		t.Fatalf("asked %+v, want once for the 7 jobs left", asked)
	}
	asked = nil
	sum, err = e.run(m, func(c *Config) { c.Confirm = func(s Spend) error { asked = append(asked, s); return nil } })
	if err != nil || len(asked) != 0 || sum.Counts[lifecycle.Done] != 10 {
		t.Fatalf("with nothing to submit: asked %+v, %+v, %v", asked, sum, err)
	}
}
