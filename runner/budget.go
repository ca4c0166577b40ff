package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"comfybatch/lifecycle"
	"comfybatch/manifest"
	"comfybatch/runcomfy"
	"comfybatch/store"
)

// PriceAPI is the part of the client that reads a model's price. The
// runcomfy client has it; Config.API is used when it does.
type PriceAPI interface {
	Model(ctx context.Context, modelID string) (runcomfy.ModelInfo, error)
}

// priceTimeout bounds the price calls at the start of a run: without a cap
// a run is better started with unknown estimates than late.
const priceTimeout = 30 * time.Second

// costEpsilon absorbs float error in dollar sums, so that four jobs at $0.25
// fit a $1.00 cap.
const costEpsilon = 1e-9

// BudgetError is a --max-cost that cannot be enforced: a model whose price
// cannot be read, or a job whose cost cannot be estimated. Nothing is
// submitted; the jobs stay pending.
type BudgetError struct{ Problems []string }

func (e *BudgetError) Error() string {
	return "--max-cost cannot be enforced: " + strings.Join(e.Problems, "; ") +
		"; comfybatch needs a price it can read (price_unit second or output, above $0) or a cost RunComfy reported for the model; " +
		"fix that (a `duration` in the manifest's defaults prices every job of a per-second model), or run without --max-cost"
}

// costs is what a run knows about money: each model's price, each job's
// estimated cost, and, with --max-cost, how much of the cap is committed.
type costs struct {
	prices  map[string]lifecycle.Price // by model id, for models the API priced
	why     map[string]string          // by model id: why it has no price
	highest map[string]float64         // by model id: the highest cost RunComfy reported

	mu    sync.Mutex
	est   map[string]float64 // job id -> estimate; only jobs with one
	taken map[string]float64 // job id -> what its submission in this run was counted for
	// committed is, from the start of the run, the ledger's spent plus the
	// estimate of every submission whose cost is not reported yet; then the
	// estimate of each submission this run makes. It only grows within a
	// run (an estimate is not swapped for the reported cost until the next
	// run reads the ledger), which keeps the cap on the safe side.
	committed float64
	max       float64 // 0: no cap
	full      bool    // the cap refused a job: every later one is refused too
	capped    int     // jobs left pending by the cap
	next      float64 // the estimate of the first job refused
}

// estimate prices one job's input: what lifecycle.Charge makes of its
// estimate at the model's price and the highest cost reported for the model.
func (c *costs) estimate(model string, input json.RawMessage) (float64, string) {
	var est float64
	var ok bool
	why := c.why[model]
	if p, priced := c.prices[model]; priced {
		est, ok, why = lifecycle.Estimate(input, p)
	}
	if why == "" && !ok {
		why = "no price for model " + model
	}
	usd, ok := lifecycle.Charge(est, ok, c.highest[model])
	if !ok {
		return 0, why
	}
	return usd, ""
}

// ledgerEstimate estimates a ledger job that may not be in the manifest,
// from its recorded input, and remembers it.
func (c *costs) ledgerEstimate(id, model string, input json.RawMessage) (float64, bool) {
	c.mu.Lock()
	usd, ok := c.est[id]
	c.mu.Unlock()
	if ok {
		return usd, true
	}
	usd, why := c.estimate(model, input)
	if why != "" {
		return 0, false
	}
	c.mu.Lock()
	c.est[id] = usd
	c.mu.Unlock()
	return usd, true
}

// uncosted adds up the estimates of the submissions that may be billed but
// have no reported cost, and counts those it cannot estimate.
func (c *costs) uncosted(ctx context.Context, st *store.Store) (usd float64, unpriced []string, err error) {
	err = st.EachUncosted(ctx, func(u store.Uncosted) error {
		e, ok := c.ledgerEstimate(u.ID, u.Model, u.Input)
		if !ok {
			unpriced = append(unpriced, u.ID)
			return nil
		}
		usd += e * float64(u.Submissions)
		return nil
	})
	return usd, unpriced, err
}

// take reserves a job's estimate under the cap before it is submitted. Once
// one job does not fit, none does: jobs are submitted in manifest order, and
// a cheaper job slipping past a refused one would make the cap's effect hard
// to predict.
func (c *costs) take(id, model string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	// A cost RunComfy reported during this run for the model raises what
	// each later submission counts for.
	usd, _ := lifecycle.Charge(c.est[id], true, c.highest[model])
	if c.max > 0 {
		if c.full || c.committed+usd > c.max+costEpsilon {
			if !c.full {
				c.next = usd
			}
			c.full = true
			c.capped++
			return false
		}
	}
	c.committed += usd
	c.taken[id] = usd
	return true
}

// reported takes in a cost RunComfy reported for a job during this run:
// the model's highest cost so far is raised, and what the job's submission
// was counted for is raised to it (never lowered: a run stays on the safe
// side of its cap until the next one reads the ledger).
func (c *costs) reported(id, model string, usd float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if usd > c.highest[model] {
		c.highest[model] = usd
	}
	if counted, ok := c.taken[id]; ok && usd > counted {
		c.committed += usd - counted
		c.taken[id] = usd
	}
}

// toSubmit adds up the estimates of the manifest's jobs in the states a run
// submits from, as the ledger has them now.
func (c *costs) toSubmit(ctx context.Context, st *store.Store, m *manifest.Manifest, states []lifecycle.State) (usd float64, unpriced int, err error) {
	err = st.EachID(ctx, func(id string) error {
		if _, ok := m.Job(id); !ok {
			return nil
		}
		c.mu.Lock()
		e, ok := c.est[id]
		c.mu.Unlock()
		if !ok {
			unpriced++
		}
		usd += e
		return nil
	}, states...)
	return usd, unpriced, err
}

// prepareCosts reads the model prices and estimates every job. With
// --max-cost every job the run may submit, and every submission whose cost
// is not reported yet, must have an estimate, or nothing is submitted (a
// BudgetError). Without a cap the estimates only feed the progress display,
// so a missing price is logged and the run goes on.
func (r *run) prepareCosts(ctx context.Context) error {
	cfg := r.cfg
	api := cfg.Prices
	if api == nil {
		api, _ = cfg.API.(PriceAPI)
	}
	c := &costs{prices: map[string]lifecycle.Price{}, why: map[string]string{}, est: map[string]float64{}, taken: map[string]float64{}, max: cfg.MaxCost}
	var err error
	if c.highest, err = cfg.Store.HighestCosts(r.work); err != nil {
		return err
	}

	models := map[string]bool{}
	for _, j := range cfg.Manifest.Jobs {
		models[j.Model] = true
	}
	if err := cfg.Store.EachUncosted(r.work, func(u store.Uncosted) error {
		models[u.Model] = true
		return nil
	}); err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, priceTimeout)
	defer cancel()
	for _, m := range slices.Sorted(maps.Keys(models)) {
		if api == nil {
			c.why[m] = "the API client cannot read model prices"
			continue
		}
		info, err := api.Model(pctx, m)
		if ctx.Err() != nil {
			return ErrInterrupted
		}
		if r.unreachableStop(err) {
			return r.stopErr
		}
		if err != nil {
			c.why[m] = fmt.Sprintf("price of %s unknown: %v", m, err)
			continue
		}
		c.prices[m] = lifecycle.Price{BaseUSD: info.BasePriceUSD, Unit: info.PriceUnit}
	}

	unpriced := map[string]int{} // why -> jobs
	for _, j := range cfg.Manifest.Jobs {
		if usd, why := c.estimate(j.Model, j.Input); why == "" {
			c.est[j.ID] = usd
		}
	}
	// The jobs this run may submit, as Run's feed will list them, streamed
	// from the ledger rather than held in a map of every job.
	err = cfg.Store.EachID(r.work, func(id string) error {
		j, ok := cfg.Manifest.Job(id)
		if _, priced := c.est[id]; ok && !priced && r.selected(id) {
			_, why := c.estimate(j.Model, j.Input)
			unpriced[why]++
		}
		return nil
	}, lifecycle.SubmitFrom(r.flags())...)
	if err != nil {
		return err
	}
	var problems []string
	for _, why := range slices.Sorted(maps.Keys(unpriced)) {
		problems = append(problems, fmt.Sprintf("%s (%d jobs to submit)", why, unpriced[why]))
	}
	spent, err := cfg.Store.Spent(r.work)
	if err != nil {
		return err
	}
	open, noEst, err := c.uncosted(r.work, cfg.Store)
	if err != nil {
		return err
	}
	if len(noEst) > 0 {
		problems = append(problems, fmt.Sprintf("%d jobs already at RunComfy (or cut off mid-submission) have no cost estimate, e.g. %s", len(noEst), noEst[0]))
	}
	c.committed = spent + open
	r.costs = c

	if len(problems) == 0 {
		return nil
	}
	if cfg.MaxCost > 0 {
		return &BudgetError{Problems: problems}
	}
	r.log.Info("cost estimates are incomplete; spending is still recorded as RunComfy reports it", "why", strings.Join(problems, "; "))
	return nil
}

// roundUSD keeps dollar sums to a millionth for people to read.
func roundUSD(x float64) float64 { return math.Round(x*1e6) / 1e6 }
