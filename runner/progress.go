package runner

import (
	"context"
	"time"

	"comfybatch/lifecycle"
)

// Progress is a snapshot of a run for a display: Run takes one at the
// start, every Config.ProgressEvery, and once at the end (Final). It is
// read from the ledger, the one place every worker writes to, so the
// runner needs no counters of its own and knows nothing of terminals.
type Progress struct {
	// Counts has every ledger job by state, as `status` shows it (jobs no
	// longer in the manifest included: a run still collects them).
	Counts         map[lifecycle.State]int
	Total          int
	Settled        int // done, failed, cancelled or unknown
	SettledAtStart int
	// DeepestQueue is the highest queue position RunComfy reported for a
	// queued job; 0 when none is known.
	DeepestQueue int
	Submitted    int // new submissions made by this run
	Elapsed      time.Duration

	// Money, when prices are known (Priced): SpentUSD is what RunComfy
	// reported, over every run of this ledger; InFlightUSD the estimate of
	// the submissions whose cost is not reported yet; RemainingUSD the
	// estimate of the jobs still to submit (by this run, or a later one
	// when a cap holds them back). Unpriced counts the jobs without an
	// estimate, which the sums leave out.
	Priced       bool
	SpentUSD     float64
	InFlightUSD  float64
	RemainingUSD float64
	Unpriced     int
	MaxCostUSD   float64 // the --max-cost cap; 0 when none

	// Outage: calls to an API that answered earlier ones have been failing
	// without an answer for OutageFor; OutageWhy is the last failure. Jobs
	// keep their states meanwhile: their counts say nothing new.
	Outage    bool
	OutageFor time.Duration
	OutageWhy string

	Final bool // the last snapshot: the run is over
}

// outageAPI is the part of the runcomfy client that reports an outage.
type outageAPI interface {
	Outage() (since time.Time, why string)
}

// Rate is how many jobs per second this run has settled.
func (p Progress) Rate() float64 {
	s := p.Elapsed.Seconds()
	if s <= 0 {
		return 0
	}
	return float64(p.Settled-p.SettledAtStart) / s
}

// ETA is how long the jobs not yet settled will take at the rate so far;
// ok is false until a job has settled.
func (p Progress) ETA() (time.Duration, bool) {
	rate := p.Rate()
	if rate <= 0 {
		return 0, false
	}
	left := p.Total - p.Settled
	return time.Duration(float64(left) / rate * float64(time.Second)), true
}

// EstimatedUSD is what the jobs will have cost once this run has submitted
// everything: spent, plus in flight, plus still to submit.
func (p Progress) EstimatedUSD() float64 { return p.SpentUSD + p.InFlightUSD + p.RemainingUSD }

func settled(c map[lifecycle.State]int) int { return lifecycle.Count(c, lifecycle.State.Settled) }

// snapshot reads the ledger into a Progress.
func (r *run) snapshot(start time.Time, settledAtStart int) (Progress, error) {
	st := r.cfg.Store
	c, err := st.Counts(r.work)
	if err != nil {
		return Progress{}, err
	}
	p := Progress{Counts: c, Settled: settled(c), SettledAtStart: settledAtStart,
		Submitted: int(r.submitted.Load()), Elapsed: r.cfg.Now().Sub(start), MaxCostUSD: r.cfg.MaxCost}
	for _, n := range c {
		p.Total += n
	}
	if o, ok := r.cfg.API.(outageAPI); ok {
		if since, why := o.Outage(); !since.IsZero() {
			p.Outage, p.OutageFor, p.OutageWhy = true, max(r.cfg.Now().Sub(since), 0), why
		}
	}
	if p.DeepestQueue, err = st.DeepestQueue(r.work); err != nil {
		return p, err
	}
	if p.SpentUSD, err = st.Spent(r.work); err != nil {
		return p, err
	}
	if c := r.costs; c != nil {
		var noEst []string
		if p.InFlightUSD, noEst, err = c.uncosted(r.work, st); err != nil {
			return p, err
		}
		var unpriced int
		if p.RemainingUSD, unpriced, err = c.toSubmit(r.work, st, r.cfg.Manifest, lifecycle.SubmitFrom(r.flags())); err != nil {
			return p, err
		}
		p.Priced, p.Unpriced = len(c.prices) > 0, len(noEst)+unpriced
	}
	return p, nil
}

// progress reports a snapshot every ProgressEvery until done is
// closed, to Config.Progress or, without one, as a log line.
func (r *run) progress(ctx context.Context, done <-chan struct{}, start time.Time, settledAtStart int) {
	every := r.cfg.ProgressEvery
	if every == 0 {
		every = 5 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if p, err := r.snapshot(start, settledAtStart); err == nil {
			r.report(p)
		}
	}
}

func (r *run) report(p Progress) {
	if r.cfg.Progress != nil {
		r.cfg.Progress(p)
		return
	}
	if p.Final {
		return // the caller reports how the run ended
	}
	args := []any{}
	for _, st := range lifecycle.States {
		if p.Counts[st] > 0 {
			args = append(args, string(st), p.Counts[st])
		}
	}
	r.log.Info("progress", args...)
}
