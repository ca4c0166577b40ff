package runner

import (
	"comfybatch/lifecycle"
	"comfybatch/store"
)

// Spend is what a run is about to submit, for Config.Confirm to weigh
// before the first submission: the same estimates plan and the display
// make (lifecycle.Estimate, raised by lifecycle.Charge to the highest
// cost reported for the model).
type Spend struct {
	Jobs     int     // new submissions the run would make (within --max-submissions)
	USD      float64 // the estimated cost of those of them with an estimate
	Unpriced int     // those of them without an estimate, which USD leaves out
	// MaxCostUSD is the --max-cost cap (0: none) and CommittedUSD what
	// counts against it already: spent plus in-flight estimates.
	MaxCostUSD, CommittedUSD float64
}

// AtRisk is the most the run can spend on new submissions, as far as the
// estimates tell: their estimate, or less when --max-cost stops the run
// sooner.
func (s Spend) AtRisk() float64 {
	if s.MaxCostUSD <= 0 {
		return s.USD
	}
	return max(0, min(s.USD, s.MaxCostUSD-s.CommittedUSD))
}

// spend works out what the run is about to submit, in the order feed
// submits it, and then redo, the done jobs --redo-rejected will send back.
func (r *run) spend(redo []store.Job) (Spend, error) {
	s := Spend{MaxCostUSD: r.cfg.MaxCost}
	c := r.costs
	if c != nil {
		s.CommittedUSD = c.committed
	}
	add := func(j store.Job) error {
		if _, ok := r.cfg.Manifest.Job(j.ID); !ok || !r.selected(j.ID) {
			return nil // feed submits only the manifest's jobs, within --job
		}
		if max := r.cfg.MaxSubmissions; max > 0 && s.Jobs >= max {
			return nil
		}
		s.Jobs++
		var usd float64
		ok := false
		if c != nil {
			c.mu.Lock()
			usd, ok = c.est[j.ID]
			c.mu.Unlock()
		}
		if !ok {
			s.Unpriced++
			return nil
		}
		usd, _ = lifecycle.Charge(usd, true, c.highest[j.Model])
		s.USD += usd
		return nil
	}
	if err := r.cfg.Store.EachJob(r.work, add, lifecycle.SubmitFrom(r.flags())...); err != nil {
		return s, err
	}
	for _, j := range redo {
		if err := add(j); err != nil {
			return s, err
		}
	}
	return s, nil
}
