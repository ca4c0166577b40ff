package runner

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"comfybatch/lifecycle"
	"comfybatch/runcomfy/runcomfytest"
	"comfybatch/store"
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

// --redo-rejected asks before it moves anything: the rejected jobs are in
// the question's count, and a "no" leaves them done with their files where
// they were — not pending, for a later run without the flag to pay for.
func TestRedoRejectedAsksFirst(t *testing.T) {
	e := newEnv(t, runcomfytest.Config{CostUSD: 0.25})
	m := pricedManifest(t, 4, 5)
	if _, err := e.run(m, nil); err != nil {
		t.Fatal(err)
	}
	jobs := e.jobs()
	j := jobs["job-001"]
	if j.State != lifecycle.Done {
		t.Fatalf("job-001 is %s, want done", j.State)
	}
	rj, err := store.OpenReviews(e.ledger, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := rj.Put(context.Background(), store.Review{JobID: j.ID, RequestID: j.RequestID, Verdict: store.Rejected}); err != nil {
		t.Fatal(err)
	}
	rj.Close()
	files, _ := filepath.Glob(filepath.Join(e.dir, "out", "job-001*"))
	if len(files) == 0 {
		t.Fatal("no output file for job-001")
	}

	var asked []Spend
	no := errors.New("no")
	_, err = e.run(m, func(c *Config) {
		c.RedoRejected = true
		c.Confirm = func(s Spend) error { asked = append(asked, s); return no }
	})
	if !errors.Is(err, no) || len(asked) != 1 || asked[0].Jobs != 1 || asked[0].USD != 0.25 {
		t.Fatalf("err %v, asked %+v; want Confirm's error, asked once for the 1 rejected job at $0.25", err, asked)
	}
	if got := e.jobs()["job-001"]; got.State != lifecycle.Done || got.RequestID != j.RequestID {
		t.Fatalf("after a no: job-001 is %s with request %s, want done with %s", got.State, got.RequestID, j.RequestID)
	}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("after a no, %s was moved: %v", f, err)
		}
	}
	if created := e.srv.Stats().Created; created != 4 {
		t.Fatalf("the fake created %d jobs, want the first run's 4", created)
	}
}

// With --job, the question counts the selected jobs only.
func TestConfirmCountsOnlyTheSelection(t *testing.T) {
	e := newEnv(t, runcomfytest.Config{CostUSD: 0.25})
	m := pricedManifest(t, 6, 5)
	// Every job in the ledger, one submitted, five pending.
	if _, err := e.run(m, func(c *Config) { c.MaxSubmissions = 1 }); err != nil {
		t.Fatal(err)
	}
	only := map[string]bool{}
	for id, j := range e.jobs() {
		if j.State == lifecycle.Pending && len(only) < 2 {
			only[id] = true
		}
	}
	var asked []Spend
	no := errors.New("no")
	_, err := e.run(m, func(c *Config) {
		c.Only = only
		c.Confirm = func(s Spend) error { asked = append(asked, s); return no }
	})
	if !errors.Is(err, no) || len(asked) != 1 || asked[0].Jobs != 2 || asked[0].USD != 0.5 {
		t.Fatalf("err %v, asked %+v; want one question for the 2 selected jobs at $0.50", err, asked)
	}
}

// A rejected job is sent back only when its submission goes: under
// --max-submissions 1, one of three is submitted again and the other two
// stay done with their files, so a later run without --redo-rejected pays
// for none of them.
func TestRedoRejectedBeyondACapStaysDone(t *testing.T) {
	e := newEnv(t, runcomfytest.Config{CostUSD: 0.25})
	m := pricedManifest(t, 4, 5)
	if _, err := e.run(m, nil); err != nil {
		t.Fatal(err)
	}
	rj, err := store.OpenReviews(e.ledger, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"job-000", "job-001", "job-002"} {
		j := e.jobs()[id]
		if err := rj.Put(context.Background(), store.Review{JobID: id, RequestID: j.RequestID, Verdict: store.Rejected}); err != nil {
			t.Fatal(err)
		}
	}
	rj.Close()
	sum, err := e.run(m, func(c *Config) { c.RedoRejected, c.MaxSubmissions = true, 1 })
	if err != nil || sum.Redone != 1 || sum.Submitted != 1 {
		t.Fatalf("run --redo-rejected --max-submissions 1: %v, redone %d, submitted %d; want 1 and 1", err, sum.Redone, sum.Submitted)
	}
	done := 0
	for _, j := range e.jobs() {
		if j.State == lifecycle.Done {
			done++
		}
	}
	if done != 4 {
		t.Fatalf("%d jobs done, want all 4 (the capped rejected ones stay done)", done)
	}
	before := e.srv.Stats().Created
	if sum, err := e.run(m, nil); err != nil || sum.Submitted != 0 || e.srv.Stats().Created != before {
		t.Fatalf("a plain run after it: %v, submitted %d; want nothing paid", err, sum.Submitted)
	}
}
