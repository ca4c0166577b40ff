package runner

import (
	"context"

	"comfybatch/lifecycle"
	"comfybatch/store"
)

// Money is what a run's closing summary says of spending, read from the
// ledger when the run ends: what RunComfy reported, during this run and
// over the ledger's whole life, and what is still only an estimate.
type Money struct {
	// SpentThisRunUSD is the costs RunComfy reported while this run went
	// on (for jobs submitted by it or by an earlier run and collected now);
	// SpentUSD every cost RunComfy reported, every run of this ledger.
	SpentThisRunUSD float64
	SpentUSD        float64
	// Unreported counts the submissions RunComfy finished without a cost:
	// their spend is unknown, never $0.
	Unreported int
	// Uncosted counts the submissions that may be billed and have no
	// reported cost: in flight, cut off (unknown), or finished without one.
	Uncosted int
	// Priced is set when the run made estimates (from prices, or from the
	// costs reported for a model): UncostedUSD then estimates
	// the Uncosted submissions, and RemainingUSD the jobs a run with the
	// same flags (and selection) would still submit. Unpriced counts the
	// submissions and jobs without an estimate, which the sums leave out.
	Priced                    bool
	UncostedUSD, RemainingUSD float64
	Remaining, Unpriced       int
}

// money reads the closing summary's money from the ledger. spentBefore is
// what the ledger had reported when the run started.
func (r *run) money(ctx context.Context, spentBefore float64) (Money, error) {
	st := r.cfg.Store
	var m Money
	var err error
	if m.SpentUSD, err = st.Spent(ctx); err != nil {
		return m, err
	}
	m.SpentThisRunUSD = roundUSD(max(0, m.SpentUSD-spentBefore))
	m.SpentUSD = roundUSD(m.SpentUSD)
	if m.Unreported, err = st.Unreported(ctx); err != nil {
		return m, err
	}
	c := r.costs
	err = st.EachUncosted(ctx, func(u store.Uncosted) error {
		m.Uncosted += u.Submissions
		if c == nil {
			return nil
		}
		if e, ok := c.ledgerEstimate(u.ID, u.Model, u.Input); ok {
			m.UncostedUSD += e * float64(u.Submissions)
		} else {
			m.Unpriced += u.Submissions
		}
		return nil
	})
	if err != nil {
		return m, err
	}
	err = st.EachID(ctx, func(id string) error {
		if _, ok := r.cfg.Manifest.Job(id); !ok || !r.selected(id) {
			return nil
		}
		m.Remaining++
		if c == nil {
			return nil
		}
		c.mu.Lock()
		e, ok := c.est[id]
		c.mu.Unlock()
		if ok {
			m.RemainingUSD += e
		} else {
			m.Unpriced++
		}
		return nil
	}, lifecycle.SubmitFrom(r.flags())...)
	if err != nil {
		return m, err
	}
	m.Priced = c != nil
	m.UncostedUSD, m.RemainingUSD = roundUSD(m.UncostedUSD), roundUSD(m.RemainingUSD)
	return m, nil
}

// LedgerMoney is Money for a run that had nothing to do (NothingToDo):
// what the ledger holds, with no estimate, since no price was read.
func LedgerMoney(ctx context.Context, st *store.Store) (Money, error) {
	var m Money
	var err error
	if m.SpentUSD, err = st.Spent(ctx); err != nil {
		return m, err
	}
	m.SpentUSD = roundUSD(m.SpentUSD)
	if m.Unreported, err = st.Unreported(ctx); err != nil {
		return m, err
	}
	err = st.EachUncosted(ctx, func(u store.Uncosted) error {
		m.Uncosted += u.Submissions
		return nil
	})
	return m, err
}
