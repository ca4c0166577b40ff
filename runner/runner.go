// Package runner owns a run: it brings the ledger in line with the manifest,
// then drives every job through a bounded worker pool — submit, poll, fetch
// the result, download and verify the outputs — recording each step in the
// ledger before acting on it, so that a run stopped at any moment resumes
// without submitting anything twice.
package runner

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"comfybatch/lifecycle"
	"comfybatch/localfile"
	"comfybatch/manifest"
	"comfybatch/outstore"
	"comfybatch/runcomfy"
	"comfybatch/store"
)

// API is the part of the RunComfy client the runner uses; tests and the
// simulated API satisfy it through the real client.
type API interface {
	Submit(ctx context.Context, modelID string, input any, o runcomfy.SubmitOptions) (runcomfy.SubmitResponse, error)
	Result(ctx context.Context, requestID string) (runcomfy.Result, error)
}

// Config is everything a run needs, passed in so tests control it all.
type Config struct {
	Manifest *manifest.Manifest
	Store    *store.Store
	API      API
	// HTTP downloads output files. It must not carry the API token to other
	// hosts: pass the runcomfy client's HTTPClient().
	HTTP   *http.Client
	OutDir string
	// Files turns the local files a job's input names into what its
	// submit carries (localfile.Sender); nil sends them inline as data:
	// URIs. An uploader to the user's bucket plugs in here.
	Files localfile.Sender
	// Out, when set, is where the outputs go instead of the folder OutDir:
	// a bucket. The caller opens and closes it.
	Out outstore.Store

	Concurrency     int           // jobs at RunComfy at once (submitted, not finished there); default 8
	Downloads       int           // downloads at once, in their own pool; default Concurrency
	PollMax         time.Duration // default DefaultPollMax
	SubmitOnly      bool
	RetryFailed     bool
	ResubmitUnknown bool
	// RedoRejected submits again every done job whose output was rejected
	// in review, keeping the rejected files and request id in its history.
	RedoRejected   bool
	MaxSubmissions int // 0 = unlimited
	// Only, when not nil, is the selection (--job): the run brings only
	// these jobs in line with the manifest, submits, polls and downloads
	// only them, and counts only them in Summary.Counts. Every other job is
	// left as it is, in flight ones included, for a later run.
	Only map[string]bool
	// MaxCost caps, in USD and across runs, the ledger's spent plus the
	// estimated cost of every submission not yet reported: a job whose
	// estimate would pass it is not submitted (0 = no cap). Estimates come
	// from each model's price (Prices, else API if it can read prices).
	MaxCost float64
	Prices  PriceAPI
	// Estimate reads prices even when nothing else needs them (no cap,
	// no progress), for the estimates of Summary.Money.
	Estimate bool

	Log   *slog.Logger
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
	// StallTimeout abandons (and resumes) a download that receives no
	// byte for this long; default DefaultStallTimeout.
	StallTimeout time.Duration

	// ProgressEvery is how often progress is reported; 0 = 5 s, <0 = never.
	ProgressEvery time.Duration
	// Progress receives each snapshot, from one goroutine at a time; nil
	// logs a "progress" line instead. The display is the caller's business.
	Progress func(Progress)
	// Confirm, when set and the run has jobs to submit, is asked once,
	// before anything is submitted or polled, with what the run is about
	// to submit. An error ends the run there and is returned.
	Confirm func(Spend) error
}

// Summary is what a run did and where the ledger stands after it.
type Summary struct {
	Counts    map[lifecycle.State]int // the manifest's jobs, by state, after the run
	Submitted int                     // new submissions made by this run
	Recovered int                     // jobs found mid-submission at start, now unknown
	Sync      store.SyncReport
	InFlight  int // jobs still running at RunComfy when the run ended
	Capped    int // jobs left pending by --max-submissions
	Redone    int // rejected jobs sent back to be submitted (--redo-rejected)
	// CostCapped counts the jobs left pending by --max-cost; CommittedUSD
	// is spent plus in-flight estimates when the cap stopped submissions,
	// and NextUSD the estimate of the first job that did not fit.
	CostCapped            int
	CommittedUSD, NextUSD float64
	// Money is what RunComfy reported, this run and in all, and what is
	// still estimated, when the run ended.
	Money Money
	// Outside counts, on a run with a selection (Config.Only), the jobs
	// outside it that a run would collect: at RunComfy, or completed and
	// waiting for their files. This run left them alone.
	Outside int
}

// DefaultStallTimeout is how long a download may receive nothing before it
// is abandoned and resumed: far longer than any healthy CDN pauses, short
// enough that a host that sends headers and then nothing costs a worker
// half a minute, not the night.
const DefaultStallTimeout = 30 * time.Second

// ErrInterrupted is returned when the context was cancelled (a signal): the
// ledger is saved and the next run collects what is still running.
var ErrInterrupted = errors.New("interrupted")

// AccountError wraps an error that stops every submission: a bad or expired
// token, no balance. Fixing the cause and running again continues.
type AccountError struct{ Err error }

func (e *AccountError) Error() string { return e.Err.Error() }
func (e *AccountError) Unwrap() error { return e.Err }

// UnreachableError is a run stopped because the API could not be reached
// at all: no call was ever answered and the first ones could not connect
// (runcomfy.GiveUpUnreached). Nothing was created; the jobs keep their
// states, and running again once the API is reachable continues.
type UnreachableError struct{ Err error }

func (e *UnreachableError) Error() string {
	return "cannot reach the API: " + runcomfy.Reason(e.Err)
}
func (e *UnreachableError) Unwrap() error { return e.Err }

type run struct {
	cfg Config
	// intake ends at the first signal: no new submissions, no more polls
	// or downloads. work ends at the second: a POST on the wire and the
	// ledger writes that follow it run under it.
	intake, work context.Context

	log       *slog.Logger
	submitted atomic.Int64 // POSTs that returned a request id
	redo      []store.Job  // rejected done jobs to submit again (--redo-rejected)
	redone    atomic.Int64 // of them, those sent back to be submitted
	reserved  atomic.Int64 // submissions taken from the --max-submissions budget
	capped    atomic.Int64
	files     outFiles // the output folder's shared lock and fsyncs (download.go)
	// out is where the outputs go; bucket says it is not the local folder
	// cfg.OutDir, whose resumable downloads (download.go) it then skips.
	out    outstore.Store
	bucket bool
	timing timings // how long each model's jobs take, for polling (poll.go)
	costs  *costs  // prices and estimates; nil when nobody looks at money

	// Downloads run in their own pool, so that a finished job frees its
	// place among the -j jobs at RunComfy at once.
	dlSlots chan struct{}
	dlWG    sync.WaitGroup

	fatalOnce sync.Once
	fatalErr  error // the first ledger failure; it stops the run

	stopOnce sync.Once
	stopErr  error
	stop     context.CancelFunc // stops new work after an account error
}

// Run drives every job of the manifest to a settled state, or until it is
// stopped, in two stages: when intake is done (a first signal) it submits
// nothing more, stops polling and downloading, and lets each POST already
// on the wire finish and record its request id; when work is done too (a
// second signal) it abandons those as well. work must outlive intake; pass
// the same context twice for a single-stage stop. The ledger must be open
// for writing (and so locked).
func Run(intake, work context.Context, cfg Config) (Summary, error) {
	ctx := intake
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.Downloads <= 0 {
		cfg.Downloads = 2 * cfg.Concurrency
	}
	if cfg.PollMax <= 0 {
		cfg.PollMax = DefaultPollMax
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = DefaultStallTimeout
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = runcomfy.SleepContext
	}
	out, bucket := cfg.Out, true
	if out == nil {
		out, bucket = outstore.Dir(cfg.OutDir), false
		if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
			return Summary{}, fmt.Errorf("output folder: %w", err)
		}
	}
	intake, stopIntake := context.WithCancel(intake)
	defer stopIntake()
	r := &run{cfg: cfg, log: cfg.Log, intake: intake, work: work, stop: stopIntake, out: out, bucket: bucket}
	var sum Summary
	var err error
	if sum.Recovered, err = cfg.Store.Recover(work); err != nil {
		return sum, err
	}
	if sum.Recovered > 0 {
		r.log.Warn("jobs were cut off mid-submission by an earlier run; they are now unknown and will not be resubmitted without --resubmit-unknown", "jobs", sum.Recovered)
	}
	specs := func(yield func(store.Spec) bool) {
		for order, j := range cfg.Manifest.ByID() {
			if !r.selected(j.ID) {
				continue // left as it is, changed or not, for a run that selects it
			}
			if !yield(store.Spec{ID: j.ID, Model: j.Model, Input: j.Input, Fingerprint: j.Fingerprint(), Order: order}) {
				return
			}
		}
	}
	if sum.Sync, err = cfg.Store.SyncKeeping(work, specs, keeper{ctx: work, out: out}); err != nil {
		return sum, err
	}
	// Reviews written since the last run (to their journal: the page and
	// `comfybatch review` write while a run holds the ledger) are copied
	// into the ledger, which then carries them on its own.
	if _, err := cfg.Store.FoldReviews(work); err != nil {
		return sum, err
	}
	// The rejected jobs are only listed here, for the spending question.
	var redo []store.Job
	if cfg.RedoRejected {
		if redo, err = r.rejected(work); err != nil {
			return sum, err
		}
	}
	if n := sum.Sync.Deferred; n > 0 {
		r.log.Info("jobs changed while their earlier request is still at RunComfy: it was paid for, so it is collected first; the next run submits the new input", "jobs", n)
	}
	if n := sum.Sync.Reused; n > 0 {
		r.log.Info("jobs changed back to an input already paid for: that result is reused, nothing submitted", "jobs", n)
	}
	if n := sum.Sync.Changed; n > 0 {
		r.log.Info("jobs changed since they were submitted; submitting them again", "jobs", n)
	}

	if cfg.MaxCost > 0 || cfg.ProgressEvery >= 0 || cfg.Confirm != nil || cfg.Estimate {
		if err := r.prepareCosts(ctx); err != nil {
			return sum, err
		}
	}
	if cfg.Confirm != nil {
		sp, err := r.spend(redo)
		if err != nil {
			return sum, err
		}
		if sp.Jobs > 0 {
			if err := cfg.Confirm(sp); err != nil {
				return sum, err
			}
		}
	}
	// Each rejected job is sent back only when its submission goes (feed):
	// one a cap, a stop or a signal keeps from it stays done, not pending
	// for a later run to pay for without --redo-rejected.
	r.redo = redo

	if learned, err := cfg.Store.Durations(work); err == nil {
		r.timing.seed(learned)
	} else {
		r.log.Warn("could not read what earlier runs learned of job durations; learning again", "error", err)
	}
	spentBefore, err := cfg.Store.Spent(work)
	if err != nil {
		return sum, err
	}
	start := cfg.Now()
	var settledAtStart int
	if c, err := cfg.Store.Counts(work); err == nil {
		settledAtStart = settled(c)
	}
	done, reported := make(chan struct{}), make(chan struct{})
	if cfg.ProgressEvery >= 0 {
		// The first snapshot is the run's starting point, taken before
		// anything is submitted; the ticker's come after.
		if p, err := r.snapshot(start, settledAtStart); err == nil {
			r.report(p)
		}
		go func() {
			defer close(reported)
			r.progress(r.intake, done, start, settledAtStart)
		}()
	} else {
		close(reported)
	}
	feedErr := r.feed()
	close(done)
	<-reported // one snapshot at a time: the final one comes after
	if work.Err() != nil && errors.Is(feedErr, context.Canceled) {
		feedErr = nil // stopped by a second signal, not failed
	}
	// The closing bookkeeping (metadata.jsonl, the counts) is local and
	// quick, and runs even after a second signal, so that the folder and
	// the summary match the ledger.
	r.work = context.WithoutCancel(work)

	sum.Submitted = int(r.submitted.Load())
	if sum.Redone = int(r.redone.Load()); sum.Redone > 0 {
		r.log.Info("jobs whose output was rejected in review were submitted again; the rejected outputs are kept in "+HistoryDir, "jobs", sum.Redone)
	}
	sum.Capped = int(r.capped.Load())
	if c := r.costs; c != nil && c.capped > 0 {
		sum.CostCapped, sum.CommittedUSD, sum.NextUSD = c.capped, c.committed, c.next
	}
	if learned := r.timing.all(); r.timing.learned.Load() {
		if err := cfg.Store.SaveDurations(r.work, learned); err != nil {
			r.log.Warn("could not save what this run learned of job durations", "error", err)
		}
	}
	if err := writeMetadata(r.work, cfg.Store, out); err != nil {
		feedErr = errors.Join(feedErr, err)
	}
	if sum.Counts, err = r.counts(); err != nil {
		return sum, errors.Join(feedErr, err)
	}
	sum.InFlight = lifecycle.Count(sum.Counts, lifecycle.State.Outstanding)
	if sum.Money, err = r.money(r.work, spentBefore); err != nil {
		return sum, errors.Join(feedErr, err)
	}
	if cfg.Only != nil {
		if sum.Outside, err = r.outside(); err != nil {
			return sum, errors.Join(feedErr, err)
		}
	}
	if cfg.ProgressEvery >= 0 {
		if p, err := r.snapshot(start, settledAtStart); err == nil {
			p.Final = true
			r.report(p)
		}
	}
	if feedErr != nil {
		return sum, feedErr
	}
	if r.stopErr != nil {
		return sum, r.stopErr
	}
	if ctx.Err() != nil {
		return sum, ErrInterrupted
	}
	return sum, nil
}

// sender is how local files reach RunComfy.
func (r *run) sender() localfile.Sender {
	if r.cfg.Files != nil {
		return r.cfg.Files
	}
	return localfile.Inline{}
}

// flags are the run's flags as lifecycle reads them.
func (r *run) flags() lifecycle.Flags {
	return lifecycle.Flags{RetryFailed: r.cfg.RetryFailed, ResubmitUnknown: r.cfg.ResubmitUnknown, SubmitOnly: r.cfg.SubmitOnly}
}

// feed hands every job that needs work to the pool, most urgent first, in
// the order lifecycle.CollectFrom gives: completed jobs (their output URLs
// expire) before polls of jobs in flight, and those before new submissions.
func (r *run) feed() error {
	var g errgroup.Group
	slots := make(chan struct{}, r.cfg.Concurrency) // the -j jobs at RunComfy
	r.dlSlots = make(chan struct{}, r.cfg.Downloads)
	// goJob waits for a place among the -j, then asks admit (when given)
	// whether the job still goes: a budget is asked at the last moment, so
	// that every cost reported while the job waited counts. It reports
	// whether to go on feeding.
	goWork := func(j store.Job, admit func() bool, work func(store.Job, *place) error) bool {
		select {
		case slots <- struct{}{}:
		case <-r.intake.Done():
			return false
		}
		if r.intake.Err() != nil {
			<-slots
			return false
		}
		if admit != nil && !admit() {
			<-slots
			return true
		}
		p := &place{slots: slots, held: true}
		g.Go(func() error {
			defer p.release()
			r.fatal(j.ID, work(j, p))
			return nil
		})
		return true
	}
	goJob := func(j store.Job, admit func() bool) bool { return goWork(j, admit, r.handle) }
	// Every way out waits for the jobs and downloads it started.
	defer func() { g.Wait(); r.dlWG.Wait() }()

	// Done jobs whose files went missing go back to completed first.
	if err := r.checkDoneFiles(); err != nil {
		return err
	}
	if err := r.sweep(); err != nil {
		return err
	}
	// The jobs to submit are listed before any job is collected: one that
	// fails or is cancelled during this run must not be taken for one that
	// --retry-failed resubmits, which are those that ended in an earlier run.
	toSubmit, err := r.list(lifecycle.SubmitFrom(r.flags())...)
	if err != nil {
		return err
	}
	// Completed and in-flight jobs are collected whether or not the manifest
	// still lists them: they were paid for. Completed ones go to the
	// download pool first: their output URLs expire. They are listed in one
	// read, then ordered: listed state by state as the workers went, a job
	// a worker had moved from queued to running meanwhile was listed again,
	// collected twice and downloaded twice at once.
	collectFrom := lifecycle.CollectFrom(r.flags())
	toCollect, err := r.list(collectFrom...)
	if err != nil {
		return err
	}
	slices.SortStableFunc(toCollect, func(a, b store.Job) int {
		return cmp.Compare(slices.Index(collectFrom, a.State), slices.Index(collectFrom, b.State))
	})
	for _, j := range toCollect {
		if !r.selected(j.ID) {
			continue
		}
		if lifecycle.Next(j.State, lifecycle.Unchanged, r.flags()) == lifecycle.ActionDownload {
			r.enqueueDownload(j)
			continue
		}
		if !goJob(j, nil) {
			break
		}
	}
	// A submission is admitted once it has a place: a job whose submission
	// was refused lends its place, and with it its submission under
	// --max-submissions, while it waits to try again; asked earlier, the
	// budget would count a submission that may never happen.
	admit := func(j store.Job) func() bool {
		return func() bool {
			if max := r.cfg.MaxSubmissions; max > 0 && int(r.reserved.Load()) >= max {
				r.capped.Add(1)
				return false
			}
			return r.costs == nil || r.costs.take(j.ID, j.Model)
		}
	}
	for _, j := range toSubmit {
		if _, ok := r.cfg.Manifest.Job(j.ID); !ok || !r.selected(j.ID) {
			continue // no longer in the manifest, or not selected
		}
		if !goJob(j, admit(j)) {
			break
		}
	}
	for _, j := range r.redo {
		if r.intake.Err() != nil {
			break
		}
		if !goWork(j, admit(j), r.redoJob) {
			break
		}
	}
	g.Wait()
	r.dlWG.Wait()
	if n := r.capped.Load(); n > 0 {
		r.log.Warn("--max-submissions reached; jobs left pending", "pending", n)
	}
	if c := r.costs; c != nil && c.capped > 0 {
		r.log.Warn("--max-cost reached: submitting the next job would pass the cap; jobs left pending",
			"pending", c.capped, "max_cost_usd", c.max, "committed_usd", roundUSD(c.committed), "next_job_usd", roundUSD(c.next))
	}
	return r.fatalErr
}

// fatal records a ledger failure of one job's work: every one is logged,
// since each may carry a request id the ledger failed to save, and the
// first stops the run. An error that is only the second signal's cut is
// not a failure.
func (r *run) fatal(id string, err error) {
	if err == nil || r.work.Err() != nil && errors.Is(err, context.Canceled) {
		return
	}
	r.log.Error("ledger write failed", "job", id, "error", err)
	r.fatalOnce.Do(func() { r.fatalErr = err; r.stop() })
}

// enqueueDownload hands a completed job to the download pool and returns at
// once. The job is completed in the ledger, with its outputs, before it is
// handed over, and each job is handed over once per run: from the run's
// first list of completed jobs, or from its own poller when it completes.
func (r *run) enqueueDownload(j store.Job) {
	r.dlWG.Add(1)
	go func() {
		defer r.dlWG.Done()
		select {
		case r.dlSlots <- struct{}{}:
		case <-r.intake.Done():
			return // it stays completed; the next run downloads it
		}
		defer func() { <-r.dlSlots }()
		r.fatal(j.ID, r.download(j))
	}()
}

// list loads the jobs in the given states. Only jobs that need work are held
// in memory; done jobs are streamed elsewhere.
func (r *run) list(states ...lifecycle.State) ([]store.Job, error) {
	var jobs []store.Job
	err := r.cfg.Store.EachJob(r.work, func(j store.Job) error {
		jobs = append(jobs, j)
		return nil
	}, states...)
	return jobs, err
}

// counts reports the states of the manifest's jobs.
func (r *run) counts() (map[lifecycle.State]int, error) {
	m := make(map[lifecycle.State]int)
	err := r.cfg.Store.EachJobState(r.work, func(id string, st lifecycle.State) error {
		if _, ok := r.cfg.Manifest.Job(id); ok && r.selected(id) {
			m[st]++
		}
		return nil
	})
	return m, err
}

// selected reports whether the run works on job id: every job, or those
// of the selection.
func (r *run) selected(id string) bool { return r.cfg.Only == nil || r.cfg.Only[id] }

// outside counts the jobs outside the selection that a run would collect.
func (r *run) outside() (int, error) {
	n := 0
	err := r.cfg.Store.EachJobState(r.work, func(id string, st lifecycle.State) error {
		if !r.selected(id) && (st.Outstanding() || st == lifecycle.Completed) {
			n++
		}
		return nil
	})
	return n, err
}

// accountStop records the first account error and stops all new work.
func (r *run) accountStop(err error) {
	r.stopOnce.Do(func() {
		r.stopErr = &AccountError{Err: err}
		r.log.Error("stopping: the account cannot submit; jobs not yet accepted stay pending", "error", err)
		r.stop()
	})
}

// unreachableStop stops the run when a call found the API unreachable; it
// reports whether err was such a failure.
func (r *run) unreachableStop(err error) bool {
	if !runcomfy.IsUnreachable(err) {
		return false
	}
	r.stopOnce.Do(func() {
		r.stopErr = &UnreachableError{Err: err}
		r.stop()
	})
	return true
}

// outPath is where output n (0-based) of a job with count outputs goes,
// relative to the output folder: <id><ext>, or <id>+<n><ext> (n from 1)
// when the job has several. No two outputs can share a name: a job id
// never holds '+' nor starts with '.', and an extension is one dot and
// letters and digits, so the name splits back into one id, one index and
// one extension. The names comfybatch writes itself are reserved: hidden
// partial files start with a dot, and the manifest refuses a job named
// like metadata.jsonl's stem.
func outPath(id string, n, count int, ext string) string {
	if count > 1 {
		return fmt.Sprintf("%s+%d%s", id, n+1, ext)
	}
	return id + ext
}

// checkDoneFiles sends done jobs whose files are missing or the wrong size
// back to completed, to be downloaded again from their saved URLs. A
// bucket is listed once, not asked about each file.
func (r *run) checkDoneFiles() error {
	size := func(name string) (int64, error) {
		st, err := os.Stat(filepath.Join(r.cfg.OutDir, name))
		if err != nil {
			return 0, err
		}
		return st.Size(), nil
	}
	if b, ok := r.out.(*outstore.Bucket); ok {
		sizes, err := b.Sizes(r.intake)
		if err != nil {
			return fmt.Errorf("check the outputs of done jobs: %w", err)
		}
		size = func(name string) (int64, error) {
			if n, ok := sizes[name]; ok {
				return n, nil
			}
			return 0, os.ErrNotExist
		}
	}
	var missing []string
	err := r.cfg.Store.EachFile(r.work, func(id string, f store.File) error {
		n, err := size(f.Path)
		if err != nil || n != f.Bytes {
			if len(missing) == 0 || missing[len(missing)-1] != id {
				missing = append(missing, id)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, id := range missing {
		if !r.selected(id) {
			continue
		}
		j, err := r.cfg.Store.Job(r.work, id)
		if err != nil {
			return err
		}
		if j.State != lifecycle.Done {
			continue
		}
		if err := r.cfg.Store.Apply(r.work, id, lifecycle.Step{To: lifecycle.Completed, Outputs: j.Outputs,
			Detail: "output file missing or changed on disk; downloading again"}); err != nil {
			return err
		}
	}
	return nil
}

// leftover matches the names of comfybatch's own temporary files, and no
// other: a partial output (output.part) with its validator, one named the
// way earlier versions named them (.<id>.<n>.part), and metadata.jsonl
// being written (writeMetadata).
var leftover = regexp.MustCompile(`^(\.[A-Za-z0-9][A-Za-z0-9._-]*\.[0-9a-f]{12}\.[0-9]+\.part(\.validator)?|\.[A-Za-z0-9][A-Za-z0-9._-]*\.[0-9]+\.part|\.metadata-[0-9]+-[0-9]+\.jsonl)$`)

// sweep removes what killed runs left in the output folder: partial files
// that no completed job of this ledger can resume (an earlier request's,
// or a finished one's), their validators, and half-written metadata. Only
// names comfybatch makes are touched, and they all start with a dot, which
// no output's name can.
func (r *run) sweep() error {
	if r.bucket {
		return nil // an upload that was not completed left no object
	}
	keep := map[string]bool{}
	jobs, err := r.list(lifecycle.Completed)
	if err != nil {
		return err
	}
	for _, j := range jobs {
		for n := range j.Outputs {
			p := output{id: j.ID, request: j.RequestID, n: n, count: len(j.Outputs)}.part()
			keep[p], keep[validatorFile(p)] = true, true
		}
	}
	entries, err := os.ReadDir(r.cfg.OutDir)
	if err != nil {
		return fmt.Errorf("output folder: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		ours := leftover.MatchString(name)
		if !ours || keep[name] || !e.Type().IsRegular() {
			continue
		}
		if err := os.Remove(filepath.Join(r.cfg.OutDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			r.log.Warn("could not remove a leftover temporary file", "file", name, "error", err)
		}
	}
	return nil
}
