package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"comfybatch/lifecycle"
	"comfybatch/outstore"
	"comfybatch/runcomfy"
	"comfybatch/runner"
	"comfybatch/store"
)

// priceTimeout bounds the model price calls: a plan is worth more on time
// with an unknown price than late with a known one.
const priceTimeout = 30 * time.Second

type planFlags struct {
	upload          string // --upload URL: as run --upload, local inputs not inline
	schemas         []string
	retryFailed     bool
	resubmitUnknown bool
	redoRejected    bool
}

func (a *app) planCommand() *cobra.Command {
	var o planFlags
	cmd := &cobra.Command{
		Use:   "plan MANIFEST",
		Short: "Validate the manifest and show what run would do, and what it would cost; submits nothing",
		Long: `Plan validates every job like run does, then reads the ledger (read-only,
without locking it; a missing ledger means every job is new) and says what
run would do with each job: submit it (new, changed, or not yet accepted),
poll it, download it, or leave it. It estimates the cost of the jobs to
submit from each model's price (GET /v1/models/{id}, one call per model);
without a token, or when that call fails, it says the price is unknown.`,
		Example: "  comfybatch plan jobs.yaml\n  comfybatch plan jobs.yaml -v --json",
		Args:    manifestArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.plan(cmd.Context(), args[0], o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.retryFailed, "retry-failed", false, "plan as run --retry-failed would: resubmit failed and cancelled jobs")
	f.BoolVar(&o.resubmitUnknown, "resubmit-unknown", false, "plan as run --resubmit-unknown would: resubmit unknown jobs")
	f.BoolVar(&o.redoRejected, "redo-rejected", false, "plan as run --redo-rejected would: submit again the done jobs whose output was rejected in review")
	f.StringVar(&o.upload, "upload", "", "plan as run --upload `URL` would: local input files uploaded, not inline (no body limit); the bucket is not touched")
	addSchemaFlag(f, &o.schemas)
	return cmd
}

// planJSON is what `plan --json` prints: one object. Fields may be added,
// never renamed.
type planJSON struct {
	Manifest     string `json:"manifest"`      // the manifest path as given
	Ledger       string `json:"ledger"`        // the ledger path
	LedgerExists bool   `json:"ledger_exists"` // false: nothing has run yet, every job is new
	Total        int    `json:"total"`         // jobs in the manifest
	// Counts has every key, zeros included: "new", "changed", "unchanged"
	// (by fingerprint; they add up to total), then the unchanged jobs by
	// ledger state: "pending", "in_flight" (queued or running), "completed"
	// (to download), "done", "failed", "cancelled", "unknown" (submitting
	// counts as unknown: a run marks it so first); and "removed", ledger
	// jobs no longer in the manifest.
	Counts map[string]int `json:"counts"`
	// ToSubmit is how many jobs run would submit: new, changed and pending
	// ones, plus failed and cancelled with --retry-failed and unknown with
	// --resubmit-unknown.
	ToSubmit int `json:"to_submit"`
	// ToReuse counts the jobs whose input changed back to one the ledger
	// holds a completed submission for ("returned"): run reuses that paid
	// result and submits nothing for them.
	ToReuse int `json:"to_reuse"`
	// RemovedActive counts the removed jobs in flight or completed: run
	// still collects them.
	RemovedActive int `json:"removed_active"`
	// ChangedInFlight counts changed jobs whose earlier request is still
	// at RunComfy; run submits the new input and stops following it.
	ChangedInFlight int `json:"changed_in_flight"`
	// ToRedo counts the done jobs whose output was rejected in review that
	// run --redo-rejected would submit again (with --redo-rejected; they
	// are in to_submit and in the cost too).
	ToRedo int      `json:"to_redo"`
	Cost   costJSON `json:"cost"`
	// Jobs is present with -v: every manifest job, in manifest order.
	Jobs []planJobJSON `json:"jobs,omitempty"`
}

// costJSON is the estimated cost of the jobs run would submit.
type costJSON struct {
	Known        bool    `json:"known"`            // every job to submit has a price
	USD          float64 `json:"usd"`              // the sum over the jobs with a price
	PricedJobs   int     `json:"priced_jobs"`      // jobs counted in usd
	UnpricedJobs int     `json:"unpriced_jobs"`    // jobs whose price is unknown
	Reason       string  `json:"reason,omitempty"` // why no job has a price, when one reason holds for all
	// Models has one entry per model of the jobs to submit, sorted by id.
	Models []modelCostJSON `json:"models"`
}

type modelCostJSON struct {
	Model        string   `json:"model"`
	Jobs         int      `json:"jobs"`           // jobs to submit on this model
	BasePriceUSD *float64 `json:"base_price_usd"` // null when unknown
	PriceUnit    string   `json:"price_unit"`
	USD          float64  `json:"usd"`              // over the jobs with a price
	UnpricedJobs int      `json:"unpriced_jobs"`    // jobs whose price is unknown
	Reason       string   `json:"reason,omitempty"` // why some or all of its jobs have no price
}

type planJobJSON struct {
	ID           string   `json:"id"`
	Model        string   `json:"model"`
	Change       string   `json:"change"` // new, changed, unchanged
	State        string   `json:"state"`  // ledger state, "" when new
	Action       string   `json:"action"` // submit, poll, download, none
	EstimatedUSD *float64 `json:"estimated_usd"`
}

// planGroups are the count keys in the order the text output lists them.
var planGroups = []string{"pending", "in_flight", "completed", "done", "failed", "cancelled", "unknown"}

func (a *app) plan(ctx context.Context, path string, o planFlags) error {
	if o.upload != "" && !outstore.IsURL(o.upload) {
		return usagef("--upload %q: want a bucket URL, s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or azblob://CONTAINER/PREFIX", o.upload)
	}
	a.uploadInputs = o.upload != ""
	if path == stdinManifest && a.ledger != "" {
		return usagef("plan -: a manifest from stdin is planned without a ledger (a ledger belongs to one manifest file); drop --ledger, or give the manifest's file")
	}
	log, err := a.logger()
	if err != nil {
		return err
	}
	mode := catalogMode{}
	if path != stdinManifest {
		mode.ledger = a.ledgerPath(path)
	}
	m, _, _, err := a.load(ctx, path, o.schemas, mode)
	if err != nil {
		return err
	}
	// A manifest from stdin has no ledger: a ledger belongs to a manifest
	// file. Its plan is the one for a first run, every job new.
	var (
		ledger  string
		known   map[string]store.Known
		highest map[string]float64
		exists  bool
	)
	if path == stdinManifest {
		path = stdinName
	} else {
		ledger = a.ledgerPath(path)
		if known, highest, exists, err = readKnown(ctx, ledger, path); err != nil {
			return err
		}
	}
	p := runner.MakePlan(m, known, runner.PlanOptions{RetryFailed: o.retryFailed, ResubmitUnknown: o.resubmitUnknown})
	toRedo := 0
	if o.redoRejected && exists {
		if toRedo, err = planRedo(ctx, ledger, &p); err != nil {
			return err
		}
	}

	out := planJSON{Manifest: path, Ledger: ledger, LedgerExists: exists, Total: len(p.Jobs),
		Counts:          map[string]int{"new": 0, "changed": 0, "returned": 0, "unchanged": 0, "removed": p.Removed},
		RemovedActive:   p.RemovedActive,
		ChangedInFlight: p.ChangedInFlight,
		ToRedo:          toRedo,
	}
	for _, g := range planGroups {
		out.Counts[g] = 0
	}
	jobsOf := map[string]int{} // jobs to submit per model
	for _, pj := range p.Jobs {
		out.Counts[pj.Group()]++
		if pj.Change == lifecycle.Unchanged {
			out.Counts["unchanged"]++
		}
		switch pj.Action {
		case lifecycle.ActionSubmit:
			out.ToSubmit++
			jobsOf[pj.Job.Model]++
		case lifecycle.ActionReuse:
			out.ToReuse++
		}
	}

	models := slices.Sorted(maps.Keys(jobsOf))
	prices, reason := a.prices(ctx, log, models)
	if ctx.Err() != nil {
		return runner.ErrInterrupted
	}
	out.Cost = estimate(p, models, jobsOf, prices, highest, reason, a.verbose, &out)

	if a.jsonOut {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	printPlan(a.stdout, out)
	return nil
}

// readKnown reads what the ledger knows of each job, read-only and without
// the lock, so that a plan never creates a ledger and works beside a run.
// It also reads the highest cost RunComfy reported per model, which prices
// a job as a run's budget does (lifecycle.Charge).
func readKnown(ctx context.Context, path, manifestPath string) (map[string]store.Known, map[string]float64, bool, error) {
	st, err := store.Open(path, store.Options{ReadOnly: true})
	if errors.Is(err, store.ErrNoLedger) {
		return nil, nil, false, nil
	}
	if err != nil {
		return nil, nil, false, err
	}
	defer st.Close()
	if err := claimLedger(ctx, st, manifestPath, nil, false); err != nil {
		return nil, nil, true, err
	}
	known, err := st.Known(ctx)
	if err != nil {
		return nil, nil, true, fmt.Errorf("read ledger %s: %w", path, err)
	}
	highest, err := st.HighestCosts(ctx)
	if err != nil {
		return nil, nil, true, fmt.Errorf("read ledger %s: %w", path, err)
	}
	return known, highest, true, nil
}

// modelPrice is a model's price, or why it is unknown.
type modelPrice struct {
	info runcomfy.ModelInfo
	err  string
}

func (m modelPrice) price() lifecycle.Price {
	return lifecycle.Price{BaseUSD: m.info.BasePriceUSD, Unit: m.info.PriceUnit}
}

// prices asks the API for each model's price, once per model. It never
// fails: without a token, or when a call fails, the price is unknown, and
// reason (for all models) or the model's err says why.
func (a *app) prices(ctx context.Context, log *slog.Logger, models []string) (map[string]modelPrice, string) {
	if len(models) == 0 {
		return nil, ""
	}
	if !a.fake {
		token, err := a.token()
		if err != nil {
			return nil, err.Error()
		}
		if token == "" {
			return nil, "no API token to ask for prices (set RUNCOMFY_TOKEN, or pass --token-file)"
		}
	}
	api, cleanup, err := a.client(log, 10, 4)
	if err != nil {
		return nil, err.Error()
	}
	defer cleanup()
	ctx, cancel := context.WithTimeout(ctx, priceTimeout)
	defer cancel()
	out := make(map[string]modelPrice, len(models))
	for _, model := range models {
		info, err := api.Model(ctx, model)
		if err != nil {
			out[model] = modelPrice{err: "price unknown: " + err.Error()}
			continue
		}
		out[model] = modelPrice{info: info}
	}
	return out, ""
}

// estimate adds up the cost of the jobs to submit, per model; with verbose
// it also fills out.Jobs, each with its own estimate.
func estimate(p runner.Plan, models []string, jobsOf map[string]int, prices map[string]modelPrice, highest map[string]float64, reason string, verbose bool, out *planJSON) costJSON {
	c := costJSON{Reason: reason, Models: []modelCostJSON{}}
	byModel := map[string]*modelCostJSON{}
	for _, model := range models {
		mc := modelCostJSON{Model: model, Jobs: jobsOf[model]}
		if pr, ok := prices[model]; ok {
			if base, ok := pr.price().Base(); ok {
				mc.BasePriceUSD = &base
			}
			mc.PriceUnit, mc.Reason = pr.info.PriceUnit, pr.err
		} else {
			mc.Reason = reason
		}
		c.Models = append(c.Models, mc)
	}
	for i := range c.Models {
		byModel[c.Models[i].Model] = &c.Models[i]
	}
	whys := map[string]map[string]int{} // model -> why a job has no price -> jobs
	if verbose {
		out.Jobs = make([]planJobJSON, 0, len(p.Jobs))
	}
	for _, pj := range p.Jobs {
		var est *float64
		if pj.Action == lifecycle.ActionSubmit {
			mc := byModel[pj.Job.Model]
			pr, ok := prices[pj.Job.Model]
			var usd float64
			var priced bool
			var why string
			switch {
			case !ok:
				why = reason
			case pr.err != "":
				why = pr.err
			default:
				usd, priced, why = lifecycle.Estimate(pj.Job.Input, pr.price())
			}
			if charge, ok := lifecycle.Charge(usd, priced, highest[pj.Job.Model]); ok {
				usd, why = charge, ""
			}
			if why == "" {
				mc.USD += usd
				c.USD += usd
				c.PricedJobs++
				est = &usd
			} else {
				mc.UnpricedJobs++
				c.UnpricedJobs++
				if whys[mc.Model] == nil {
					whys[mc.Model] = map[string]int{}
				}
				whys[mc.Model][why]++
			}
		}
		if verbose {
			out.Jobs = append(out.Jobs, planJobJSON{ID: pj.Job.ID, Model: pj.Job.Model, Change: string(pj.Change),
				State: string(pj.State), Action: string(pj.Action), EstimatedUSD: roundp(est)})
		}
	}
	// A model whose price is known may still have jobs without one (no
	// duration): say why, with how many jobs.
	for i := range c.Models {
		mc := &c.Models[i]
		mc.USD = round(mc.USD)
		if mc.Reason == "" && mc.UnpricedJobs > 0 {
			var parts []string
			for _, why := range slices.Sorted(maps.Keys(whys[mc.Model])) {
				parts = append(parts, fmt.Sprintf("%s for %s", why, jobs(whys[mc.Model][why])))
			}
			mc.Reason = strings.Join(parts, "; ")
		}
	}
	c.USD = round(c.USD)
	c.Known = c.UnpricedJobs == 0
	return c
}

// round keeps dollar sums to a millionth, so that adding 0.05 twenty times
// prints 1, not 1.0000000000000002.
func round(x float64) float64 { return math.Round(x*1e6) / 1e6 }

func roundp(x *float64) *float64 {
	if x == nil {
		return nil
	}
	r := round(*x)
	return &r
}

func jobs(n int) string {
	if n == 1 {
		return "1 job"
	}
	return fmt.Sprintf("%d jobs", n)
}

func usd(x float64) string {
	// Cents hide the price of a short clip; keep up to four decimals.
	s := fmt.Sprintf("$%.4f", x)
	s = strings.TrimRight(s, "0")
	if i := strings.IndexByte(s, '.'); len(s)-i < 3 {
		s += strings.Repeat("0", 3-(len(s)-i))
	}
	return s
}

// printPlan writes the plan for a person.
func printPlan(w io.Writer, p planJSON) {
	ledger := p.Ledger
	switch {
	case ledger == "":
		ledger = "none (the manifest came from stdin: every job is planned as new)"
	case !p.LedgerExists:
		ledger += " (not created yet: nothing has run, every job is new)"
	}
	fmt.Fprintf(w, "plan for %s: %s; ledger %s\n", p.Manifest, jobs(p.Total), ledger)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	c := p.Counts
	fmt.Fprintf(tw, "  new\t%d\tto submit\n", c["new"])
	fmt.Fprintf(tw, "  changed\t%d\tto submit again: the input changed since it was submitted\n", c["changed"])
	if c["returned"] > 0 {
		fmt.Fprintf(tw, "  returned\t%d\tchanged back to an input submitted before: it takes up that submission again (a paid result is reused), nothing submitted\n", c["returned"])
	}
	unchanged := "already in the ledger with this input"
	if c["unchanged"] > 0 {
		unchanged += ":" // the states follow
	}
	fmt.Fprintf(tw, "  unchanged\t%d\t%s\n", c["unchanged"], unchanged)
	what := map[string]string{
		"pending":   "not yet accepted: to submit",
		"in_flight": "queued or running at RunComfy: to poll",
		"completed": "finished: to download",
		"done":      "nothing to do",
		"failed":    "left as they are (--retry-failed resubmits them)",
		"cancelled": "left as they are (--retry-failed resubmits them)",
		"unknown":   "submission cut off, may be running and billed: left as they are (--resubmit-unknown resubmits them)",
	}
	for _, g := range planGroups {
		if c[g] > 0 {
			fmt.Fprintf(tw, "    %s\t%d\t%s\n", strings.ReplaceAll(g, "_", " "), c[g], what[g])
		}
	}
	if p.ToRedo > 0 {
		fmt.Fprintf(tw, "    rejected\t%d\tdone, output rejected in review: to submit again and pay again (--redo-rejected); the rejected output is kept\n", p.ToRedo)
	}
	if n := c["removed"]; n > 0 {
		what := "nothing to do"
		if p.RemovedActive > 0 {
			what = fmt.Sprintf("%d still at RunComfy or to download: run collects them, as they were paid for", p.RemovedActive)
		}
		fmt.Fprintf(tw, "  removed\t%d\tin the ledger, no longer in the manifest; %s\n", n, what)
	}
	tw.Flush()
	fmt.Fprintf(w, "run would submit %s\n", jobs(p.ToSubmit))
	if p.ChangedInFlight > 0 {
		fmt.Fprintf(w, "note: %s changed while at RunComfy; run collects the earlier request first (it is paid for), and the run after that submits the new input\n", jobs(p.ChangedInFlight))
	}
	printCost(w, p.Cost, p.ToSubmit)
	if p.Jobs != nil {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tCHANGE\tSTATE\tACTION\tESTIMATE")
		for _, j := range p.Jobs {
			est := "-"
			if j.EstimatedUSD != nil {
				est = usd(*j.EstimatedUSD)
			} else if j.Action == string(lifecycle.ActionSubmit) {
				est = "unknown"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", j.ID, j.Change, orDash(j.State), j.Action, est)
		}
		tw.Flush()
	}
}

func printCost(w io.Writer, c costJSON, toSubmit int) {
	switch {
	case toSubmit == 0:
		fmt.Fprintln(w, "estimated cost: $0.00 (nothing to submit)")
		return
	case c.Reason != "":
		fmt.Fprintf(w, "estimated cost: unknown: %s\n", c.Reason)
		return
	case c.Known:
		fmt.Fprintf(w, "estimated cost: %s for %s\n", usd(c.USD), jobs(c.PricedJobs))
	case c.PricedJobs == 0:
		fmt.Fprintf(w, "estimated cost: unknown for %s\n", jobs(c.UnpricedJobs))
	default:
		fmt.Fprintf(w, "estimated cost: at least %s: %s priced, %s unknown\n", usd(c.USD), jobs(c.PricedJobs), jobs(c.UnpricedJobs))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, m := range c.Models {
		price := "price unknown"
		if m.BasePriceUSD != nil {
			price = fmt.Sprintf("%s per %s", usd(*m.BasePriceUSD), m.PriceUnit)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s", m.Model, jobs(m.Jobs), price, usd(m.USD))
		if m.Reason != "" {
			fmt.Fprintf(tw, "\t%s", m.Reason)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}
