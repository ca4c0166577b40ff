package runner

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"comfybatch/lifecycle"
	"comfybatch/manifest"
	"comfybatch/runcomfy/runcomfytest"
)

// pricedManifest is n jobs of the given duration: at the fake's default
// price ($0.05 a second) each is estimated at 0.05 × duration.
func pricedManifest(t *testing.T, n, duration int) *manifest.Manifest {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "model: %s\ndefaults: {duration: %d}\njobs:\n", model, duration)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - id: job-%03d\n    input: {prompt: \"p\", seed: %d}\n", i, i)
	}
	m, err := manifest.Parse("jobs.yaml", []byte(b.String()), manifest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMaxCostAcrossRuns: the cap counts what earlier runs spent, as the
// ledger has it, so raising it a little lets only a little more through.
func TestMaxCostAcrossRuns(t *testing.T) {
	e := newEnv(t, runcomfytest.Config{CostUSD: 0.25})
	m := pricedManifest(t, 10, 5) // $0.25 each, estimated and reported

	sum, err := e.run(m, func(c *Config) { c.MaxCost = 1.00 })
	if err != nil {
		t.Fatal(err)
	}
	if sum.Submitted != 4 || sum.CostCapped != 6 || sum.Counts[lifecycle.Pending] != 6 || sum.Counts[lifecycle.Done] != 4 {
		t.Fatalf("first run under $1.00: %+v", sum)
	}
	if sum.NextUSD != 0.25 || sum.CommittedUSD != 1.00 {
		t.Fatalf("first run: committed %v, next %v; want 1.00 and 0.25", sum.CommittedUSD, sum.NextUSD)
	}

	sum, err = e.run(m, func(c *Config) { c.MaxCost = 1.50 })
	if err != nil {
		t.Fatal(err)
	}
	if sum.Submitted != 2 || sum.Counts[lifecycle.Pending] != 4 {
		t.Fatalf("second run under $1.50, after $1.00 spent: %+v", sum)
	}
	if got := e.srv.Stats().Created; got != 6 {
		t.Fatalf("the fake created %d jobs, want 6", got)
	}

	// The same cap again: nothing more fits.
	sum, err = e.run(m, func(c *Config) { c.MaxCost = 1.50 })
	if err != nil || sum.Submitted != 0 || sum.CostCapped != 4 {
		t.Fatalf("third run: %+v, %v", sum, err)
	}
}

// TestMaxCostCountsJobsInFlight: submissions whose cost is not reported yet
// (here: submitted by an earlier --submit-only run) count at their estimate.
func TestMaxCostCountsJobsInFlight(t *testing.T) {
	e := newEnv(t, runcomfytest.Config{CostUSD: 0.25, QueueTime: 200 * time.Millisecond})
	m := pricedManifest(t, 10, 5)
	first, err := e.run(m, func(c *Config) { c.SubmitOnly, c.MaxSubmissions = true, 4 })
	if err != nil {
		t.Fatal(err)
	}
	if first.Submitted != 4 || first.Counts[lifecycle.Queued]+first.Counts[lifecycle.Running] != 4 {
		t.Fatalf("--submit-only run: %+v", first)
	}
	if got := e.srv.Stats().Created; got != 4 {
		t.Fatalf("after --submit-only the fake created %d jobs, want 4", got)
	}
	// This run starts with $1.00 in flight, costs not reported yet: one more
	// $0.25 job fits under $1.30, a second not.
	sum, err := e.run(m, func(c *Config) { c.MaxCost = 1.30 })
	if err != nil {
		t.Fatal(err)
	}
	if sum.Submitted != 1 || sum.CostCapped != 5 || sum.Counts[lifecycle.Done] != 5 || sum.Counts[lifecycle.Pending] != 5 {
		t.Fatalf("%+v", sum)
	}
	// The 4 in flight plus the 1 that fitted: had the in-flight $1.00 not
	// counted, 5 more would have gone now (9 in all).
	if got := e.srv.Stats().Created; got != 5 {
		t.Fatalf("the fake created %d jobs in all, want 5 (4 in flight + 1 under the cap)", got)
	}
	if d := e.srv.Duplicates(); d != 0 {
		t.Fatalf("%d duplicate submissions: jobs in flight were submitted again", d)
	}
}

// TestMaxCostNeedsAnEstimate: a cap that cannot be enforced submits nothing.
func TestMaxCostNeedsAnEstimate(t *testing.T) {
	e := newEnv(t, runcomfytest.Config{})
	sum, err := e.run(manifestOf(t, 3, "no duration"), func(c *Config) { c.MaxCost = 10 })
	var be *BudgetError
	if !errors.As(err, &be) || !strings.Contains(err.Error(), "no duration in the input (3 jobs to submit)") || !strings.Contains(err.Error(), "without --max-cost") {
		t.Fatalf("err = %v, want a BudgetError naming the missing duration and the way out", err)
	}
	if e.srv.Stats().Submits != 0 {
		t.Fatal("submitted under a cap it could not enforce")
	}
	if j := e.jobs()["job-000"]; j.State != lifecycle.Pending {
		t.Fatalf("job left %s, want pending", j.State)
	}
	_ = sum
}

// TestMaxCostCountsOnlyJobsToSubmit: jobs already done are not counted
// among those a cap cannot price.
func TestMaxCostCountsOnlyJobsToSubmit(t *testing.T) {
	e := newEnv(t, runcomfytest.Config{})
	if _, err := e.run(manifestOf(t, 3, "no duration"), nil); err != nil {
		t.Fatal(err)
	}
	_, err := e.run(manifestOf(t, 5, "no duration"), func(c *Config) { c.MaxCost = 10 })
	var be *BudgetError
	if !errors.As(err, &be) || !strings.Contains(err.Error(), "no duration in the input (2 jobs to submit)") {
		t.Fatalf("err = %v, want a BudgetError counting the 2 new jobs only", err)
	}
	if got := e.srv.Stats().Created; got != 3 {
		t.Fatalf("the fake created %d jobs, want the first run's 3", got)
	}
}

func TestTakeStopsAtTheFirstJobThatDoesNotFit(t *testing.T) {
	c := &costs{est: map[string]float64{"a": 0.5, "b": 0.75, "c": 0.1}, taken: map[string]float64{}, max: 1, committed: 0.25}
	got := []bool{c.take("a", "m"), c.take("b", "m"), c.take("c", "m")}
	if got[0] != true || got[1] != false || got[2] != false {
		t.Fatalf("take = %v; want a in, b out, and c out too (no skipping ahead)", got)
	}
	if c.capped != 2 || c.next != 0.75 || c.committed != 0.75 {
		t.Fatalf("capped %d, next %v, committed %v", c.capped, c.next, c.committed)
	}
	free := &costs{est: map[string]float64{"a": 5}, taken: map[string]float64{}}
	if !free.take("a", "m") || !free.take("unpriced", "m") {
		t.Fatal("without a cap every job goes")
	}
}

// A cost RunComfy reports during a run corrects the cap at once: the job's
// own submission counts at it, and every later submission of the model at
// least at it. (Found in review: a price implying $0.25 for jobs billed $1
// let four jobs through a $1 cap.)
func TestReportedCostCorrectsTheCapWithinARun(t *testing.T) {
	c := &costs{est: map[string]float64{"a": 0.25, "b": 0.25, "c": 0.25}, taken: map[string]float64{}, highest: map[string]float64{}, max: 1}
	if !c.take("a", "m") {
		t.Fatal("a refused")
	}
	c.reported("a", "m", 1)
	if c.committed != 1 {
		t.Fatalf("committed %v after a's $1, want 1", c.committed)
	}
	if c.take("b", "m") {
		t.Fatalf("b taken at %v committed: the model bills $1 a job", c.committed)
	}
	c.reported("a", "m", 0.1) // a lower report later never lowers it
	if c.committed != 1 {
		t.Fatalf("committed %v", c.committed)
	}

	// Where the estimate would still fit, the reported cost decides: after
	// a's $1, b counts $1, not its $0.25 estimate.
	c = &costs{est: map[string]float64{"a": 0.25, "b": 0.25}, taken: map[string]float64{}, highest: map[string]float64{}, max: 1.9}
	if !c.take("a", "m") {
		t.Fatal("a refused")
	}
	c.reported("a", "m", 1)
	if c.take("b", "m") {
		t.Fatalf("b taken at its estimate beside a's $1 report: committed %v of 1.9", c.committed)
	}
}

// TestProgressSnapshots: the observer sees the run from the first snapshot
// to a final one, one call at a time, with money that adds up.
func TestProgressSnapshots(t *testing.T) {
	e := newEnv(t, runcomfytest.Config{CostUSD: 0.25, QueueTime: 30 * time.Millisecond, RunTime: 60 * time.Millisecond})
	var (
		mu    sync.Mutex
		snaps []Progress
		busy  bool
	)
	sum, err := e.run(pricedManifest(t, 12, 10), func(c *Config) {
		c.ProgressEvery = 10 * time.Millisecond
		c.Progress = func(p Progress) {
			mu.Lock()
			if busy {
				t.Error("Progress called while a call was still running")
			}
			busy = true
			mu.Unlock()
			time.Sleep(time.Millisecond)
			mu.Lock()
			snaps, busy = append(snaps, p), false
			mu.Unlock()
		}
	})
	if err != nil || sum.Counts[lifecycle.Done] != 12 {
		t.Fatalf("%+v, %v", sum, err)
	}
	first, last := snaps[0], snaps[len(snaps)-1]
	if len(snaps) < 3 || first.Final || !last.Final {
		t.Fatalf("%d snapshots, first final %v, last final %v", len(snaps), first.Final, last.Final)
	}
	for _, p := range snaps[:len(snaps)-1] {
		if p.Final {
			t.Fatal("a snapshot before the last is final")
		}
	}
	// Before anything is submitted: 12 jobs at 0.05 × 10 s still to submit.
	if first.Total != 12 || first.Settled != 0 || !first.Priced || first.RemainingUSD != 6 || first.EstimatedUSD() != 6 {
		t.Fatalf("first snapshot %+v", first)
	}
	if last.Settled != 12 || last.SpentUSD != 3 || last.InFlightUSD != 0 || last.RemainingUSD != 0 || last.Submitted != 12 {
		t.Fatalf("last snapshot %+v", last)
	}
	if last.Rate() <= 0 {
		t.Fatalf("rate %v", last.Rate())
	}
	if eta, ok := last.ETA(); !ok || eta != 0 {
		t.Fatalf("eta %v %v at the end", eta, ok)
	}
}

func TestProgressRateAndETA(t *testing.T) {
	p := Progress{Total: 100, Settled: 30, SettledAtStart: 10, Elapsed: 10 * time.Second}
	if p.Rate() != 2 {
		t.Fatalf("rate %v, want 2 jobs/s", p.Rate())
	}
	if eta, ok := p.ETA(); !ok || eta != 35*time.Second {
		t.Fatalf("eta %v, want 35s", eta)
	}
	if _, ok := (Progress{Total: 5, Elapsed: time.Second}).ETA(); ok {
		t.Fatal("an ETA before any job settled")
	}
}

// The cap holds when RunComfy bills more than the price says: within one
// run, once a cost is reported, and across runs when it reports none at
// all (such submissions count at their estimate, never $0). Both found in
// review.
func TestCapHoldsAgainstCostsThePriceDoesNotSay(t *testing.T) {
	t.Run("billed more than priced", func(t *testing.T) {
		e := newEnv(t, runcomfytest.Config{CostUSD: 1.00}) // priced 0.05 × 5 s = $0.25
		if _, err := e.run(pricedManifest(t, 10, 5), func(c *Config) { c.MaxCost = 1.00; c.Concurrency = 1 }); err != nil {
			t.Fatal(err)
		}
		if got := e.srv.Stats().Created; got != 1 {
			t.Fatalf("cap $1.00, each job billed $1.00: %d jobs created", got)
		}
	})
	t.Run("no cost reported", func(t *testing.T) {
		e := newEnv(t, runcomfytest.Config{CostUSD: 0.25, Answers: runcomfytest.Answers{CostAs: "missing"}})
		m := pricedManifest(t, 12, 5)
		for range 3 {
			if _, err := e.run(m, func(c *Config) { c.MaxCost = 1.00 }); err != nil {
				t.Fatal(err)
			}
		}
		if got := e.srv.Stats().Created; got != 4 {
			t.Fatalf("three runs under one $1.00 cap created %d jobs of $0.25", got)
		}
	})
}
