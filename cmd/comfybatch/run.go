package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"comfybatch/lifecycle"
	"comfybatch/localfile"
	"comfybatch/outstore"
	"comfybatch/runcomfy"
	"comfybatch/runcomfy/runcomfytest"
	"comfybatch/runner"
	"comfybatch/store"
)

const (
	defaultBase = runcomfy.DefaultBaseURL
	version     = "0.1.0"
)

type runFlags struct {
	concurrency     int
	downloads       int
	rps             float64
	submitOnly      bool
	retryFailed     bool
	resubmitUnknown bool
	redoRejected    bool
	maxSubmissions  int
	maxCost         float64
	progressEvery   time.Duration
	pollMax         time.Duration
	stallTimeout    time.Duration
	schemas         []string // --schema MODEL=PATH
	confirmOver     float64
	yes             bool
	jobs            []string // --job: the selection, ids and globs
	upload          string   // --upload URL: local inputs to this bucket, sent as pre-signed URLs
}

func (a *app) runCommand() *cobra.Command {
	var o runFlags
	cmd := &cobra.Command{
		Use:   "run MANIFEST",
		Short: "Submit, poll, fetch and download every job until each is settled",
		Long: `Run drives every job of the manifest to the end: it submits new jobs, polls
them, fetches their results and downloads the outputs, recording each step in
the ledger. Stop it any way at all and run the same command again: it resumes
without submitting any job twice.`,
		Example: "  comfybatch run jobs.yaml -j 16\n  comfybatch run examples/quickstart.yaml --fake\n  comfybatch run jobs.yaml --job tub-001,tub-002 --retry-failed",
		Args:    manifestArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			err := a.run(ctx, args[0], o)
			// A signal while the ledger is read before the run proper (its
			// owner, the no-op's look, the deferred page check) surfaces as
			// that read's context error: it is an interruption all the same.
			if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) && !errors.Is(err, runner.ErrInterrupted) {
				fmt.Fprintln(a.stderr, "interrupted; run the same command again to go on")
				return runner.ErrInterrupted
			}
			return err
		},
	}
	f := cmd.Flags()
	f.IntVarP(&o.concurrency, "concurrency", "j", 8, "most jobs at RunComfy at once (submitted and not yet finished there)")
	f.IntVar(&o.downloads, "downloads", 0, "most downloads at once, in their own pool (0 = as many as -j)")
	f.Float64Var(&o.rps, "rps", 10, "most API requests per second, all calls together")
	f.BoolVar(&o.submitOnly, "submit-only", false, "submit every job, record the request ids and exit; a later run collects")
	f.BoolVar(&o.retryFailed, "retry-failed", false, "resubmit jobs that failed or were cancelled in an earlier run")
	f.BoolVar(&o.resubmitUnknown, "resubmit-unknown", false, "resubmit jobs whose submission was cut off before its request id was saved")
	f.BoolVar(&o.redoRejected, "redo-rejected", false, "submit again (and pay again for) every done job whose output was rejected in review; the rejected output is kept in _history")
	f.IntVar(&o.maxSubmissions, "max-submissions", 0, "submit at most N new jobs in this run (0 = unlimited)")
	f.DurationVar(&o.pollMax, "poll-max", runner.DefaultPollMax, "longest wait between two polls of one job")
	f.DurationVar(&o.stallTimeout, "stall-timeout", runner.DefaultStallTimeout, "abandon and resume a download that receives nothing for this long")
	f.Float64Var(&o.maxCost, "max-cost", 0, "stop submitting once the ledger's spent plus the estimated cost of jobs in flight would pass `USD`, counted across runs (0 = no cap)")
	f.DurationVar(&o.progressEvery, "progress-every", plainEvery, "how often a progress line is logged when stderr is not a terminal")
	f.Float64Var(&o.confirmOver, "confirm-over", defaultConfirmOver, "on a terminal, ask before submitting new jobs estimated above `USD` (0 = never ask)")
	f.BoolVar(&o.yes, "yes", false, "answer yes to the spending question (scripts never get it: it is asked on a terminal only)")
	f.StringArrayVar(&o.jobs, "job", nil, "work only on this job: submit, poll and download it and no other (repeatable, comma lists, globs such as 'tub.*')")
	cmd.RegisterFlagCompletionFunc("job", a.completeJobIDs)
	f.StringVar(&o.upload, "upload", "", "put local input files in this bucket (`URL` s3://, gs://, azblob://) once per content and send pre-signed URLs instead of inline data: URIs")
	addSchemaFlag(f, &o.schemas)
	return cmd
}

func manifestArg(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usagef("%s needs exactly one manifest path (got %d arguments); see `comfybatch %s --help`", cmd.Name(), len(args), cmd.Name())
	}
	return nil
}

func (a *app) run(ctx context.Context, path string, o runFlags) error {
	if o.concurrency < 1 {
		return usagef("-j/--concurrency must be at least 1")
	}
	if !(o.rps > 0) || math.IsInf(o.rps, 1) {
		// inf would build no limiter: no rate to lower on a 429.
		return usagef("--rps must be a positive number")
	}
	if o.downloads < 0 {
		return usagef("--downloads must not be negative")
	}
	if o.maxSubmissions < 0 {
		return usagef("--max-submissions must not be negative")
	}
	if !(o.maxCost >= 0) || math.IsInf(o.maxCost, 0) {
		return usagef("--max-cost must be a number of US dollars, e.g. --max-cost 25")
	}
	if o.stallTimeout <= 0 {
		return usagef("--stall-timeout must be a positive duration, e.g. 30s")
	}
	if o.progressEvery <= 0 {
		return usagef("--progress-every must be a positive duration, e.g. 30s")
	}
	if !(o.confirmOver >= 0) || math.IsInf(o.confirmOver, 0) {
		return usagef("--confirm-over must be a number of US dollars, e.g. --confirm-over 100 (0 never asks)")
	}
	patterns, err := jobPatterns(o.jobs)
	if err != nil {
		return err
	}
	if o.upload != "" && !outstore.IsURL(o.upload) {
		return usagef("--upload %q: want a bucket URL, s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or azblob://CONTAINER/PREFIX", o.upload)
	}
	a.uploadInputs = o.upload != ""
	sink := &logSink{w: a.stderr}
	log, err := a.loggerTo(sink)
	if err != nil {
		return err
	}
	folded := newFoldWarnings(log.Handler()) // a live display turns it on
	log = slog.New(folded)
	// An existing ledger is opened (and locked) first: a rerun with nothing
	// to do answers from it without reading a manifest of 100,000 jobs
	// (runner.NothingToDo says when). A new one is made only once the
	// manifest proved valid, so a broken manifest leaves no file behind.
	var st *store.Store
	openLedger := func(opts store.Options) error {
		var err error
		if st, err = store.Open(a.ledgerPath(path), opts); err != nil {
			if errors.Is(err, store.ErrLocked) {
				return fmt.Errorf("%w: wait for the other run to finish, or use `comfybatch status` to watch it", err)
			}
			// A ledger that cannot be opened is a configuration problem
			// (a bad --ledger path, a foreign file, a lost -wal): exit 2,
			// nothing submitted.
			return usageError{err}
		}
		return nil
	}
	defer func() {
		if st != nil {
			st.Close()
		}
	}()
	if _, err := os.Stat(a.ledgerPath(path)); err == nil {
		// Every page is read only if the run goes on to work: the no-op
		// reads three small tables and leaves.
		if err := openLedger(store.Options{DeferCheck: true}); err != nil {
			return err
		}
		if err := a.claim(ctx, st, path, nil, log, false); err != nil {
			return err
		}
		src := a.sources(path, o, a.out)
		// A selection's ids are checked against the manifest: read it.
		// Rejected jobs to redo are something to do, whatever the stamp says.
		if counts, out, ok := runner.NothingToDo(ctx, st, src, o.flags()); ok && len(patterns) == 0 && !o.redoRejected {
			log.Debug("nothing changed since the last run, and nothing is left to do")
			money, err := runner.LedgerMoney(ctx, st)
			if err != nil {
				return err
			}
			if err := st.Close(); err != nil {
				return err
			}
			st = nil
			return a.report(runner.Summary{Counts: counts, Money: money}, nil, closing{ledger: a.ledgerPath(path), out: out, manifest: path, submitOnly: o.submitOnly})
		}
		if err := st.Check(ctx); err != nil {
			return usageError{err}
		}
	}
	manifestBefore, _ := runner.FileSum(path)
	m, _, read, err := a.load(ctx, path, o.schemas, catalogMode{ledger: a.ledgerPath(path), refresh: true})
	if err != nil {
		if read.schemas() {
			// What the catalog said is kept even when the jobs are
			// refused, so that validate and plan can say it offline.
			kerr := func() error {
				if st == nil {
					if err := openLedger(store.Options{}); err != nil {
						return err
					}
				}
				if err := a.claim(ctx, st, path, nil, log, true); err != nil {
					return err
				}
				return keepCatalog(ctx, st, read)
			}()
			if kerr != nil {
				log.Warn("could not keep what RunComfy's catalog said in the ledger", "error", kerr)
			}
		}
		return err
	}
	var only map[string]bool
	if len(patterns) > 0 {
		only, _, err = selectJobs(patterns, func(fn func(string) error) error {
			for _, j := range m.Jobs {
				if err := fn(j.ID); err != nil {
					return err
				}
			}
			return nil
		}, "manifest", fmt.Sprintf("`comfybatch plan %s` lists every job", path))
		if err != nil {
			return err
		}
	}
	api, cleanup, err := a.client(log, o.rps, o.concurrency)
	if err != nil {
		return err
	}
	defer cleanup()
	out := a.outDir(m, path)
	if fi, err := os.Stat(out); err == nil && !fi.IsDir() {
		return usagef("the output folder %s is a file, not a folder: move it away, or choose another with --out or output.dir", out)
	}
	outs, err := outstore.Open(ctx, out)
	if err != nil {
		return usageError{err}
	}
	defer outs.Close()
	// Checked before a new ledger is made: a refusal leaves no file.
	if err := claimOutDir(ctx, outs, a.ledgerPath(path), log, false); err != nil {
		return err
	}
	if st == nil {
		if err := openLedger(store.Options{}); err != nil {
			return err
		}
	}
	if err := a.claim(ctx, st, path, outs, log, true); err != nil {
		return err
	}
	if err := keepCatalog(ctx, st, read); err != nil {
		return err
	}
	var bucket outstore.Store
	if outstore.IsURL(out) {
		bucket = outs
	}
	var files localfile.Sender // nil: inline data: URIs
	if o.upload == "" {
		o.upload = m.Upload // the manifest's, when the flag does not say
	}
	if o.upload != "" {
		up, err := outstore.OpenBucket(ctx, o.upload)
		if err != nil {
			return usageError{err}
		}
		defer up.Close()
		files = &outstore.Uploader{Bucket: up}
	}

	disp := a.newDisplay(sink, folded, log, o.progressEvery)
	running := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			log.Warn("stopping: no new submissions; waiting for submissions on the wire to record their request ids (signal again to quit at once)")
		case <-running:
		}
	}()
	sum, err := runner.Run(ctx, a.work, runner.Config{
		Manifest:        m,
		Store:           st,
		API:             api,
		HTTP:            api.HTTPClient(),
		OutDir:          out,
		Out:             bucket,
		Files:           files,
		Concurrency:     o.concurrency,
		Downloads:       o.downloads,
		PollMax:         o.pollMax,
		StallTimeout:    o.stallTimeout,
		SubmitOnly:      o.submitOnly,
		RetryFailed:     o.retryFailed,
		ResubmitUnknown: o.resubmitUnknown,
		RedoRejected:    o.redoRejected,
		MaxSubmissions:  o.maxSubmissions,
		MaxCost:         o.maxCost,
		Only:            only,
		Estimate:        true, // the closing summary says what is still estimated
		Log:             log,
		ProgressEvery:   disp.every,
		Progress:        disp.update,
		Confirm:         a.confirmSpend(ctx, o.confirmOver, o.yes),
	})
	close(running)
	disp.stop()
	if only != nil {
		if serr := runner.ForgetNothingToDo(a.work, st); serr != nil {
			log.Warn("could not record that the next run must read the manifest", "error", serr)
		}
	} else if err == nil {
		if serr := runner.StampNothingToDo(a.work, st, m, a.sources(path, o, out), manifestBefore, sum.Sync.Deferred, o.flags()); serr != nil {
			log.Warn("could not record that nothing is left to do; the next run reads the manifest", "error", serr)
		}
	}
	var be *runner.BudgetError
	if errors.As(err, &be) {
		err = usageError{err} // nothing was submitted: fix and run again
	}
	var ue *runner.UnreachableError
	if errors.As(err, &ue) {
		err = usagef("cannot reach the RunComfy API at %s (%s): check --api-base (or RUNCOMFY_API_BASE), the network, DNS, a proxy or TLS interception; nothing was submitted by this run, and running the same command again continues",
			api.Base(), runcomfy.Reason(ue.Err))
	}
	if cerr := st.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return a.report(sum, err, closing{ledger: st.Path(), out: out, manifest: path, submitOnly: o.submitOnly, selected: len(only)})
}

// client builds the API client: the real API with the user's token, or the
// simulated one in-process with --fake.
func (a *app) client(log *slog.Logger, rps float64, concurrency int) (*runcomfy.Client, func(), error) {
	base, token, cleanup := a.baseURL(), "", func() {}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if a.fake {
		srv := runcomfytest.New(fakeConfig())
		base, token = srv.Start(), fakeConfig().Token
		cleanup = srv.Close
		// Every connection goes to this process's simulated API: the
		// output URLs an earlier --fake run saved in the ledger name its
		// port, long closed, and --fake promises no network anyway.
		addr := strings.TrimPrefix(base, "http://")
		var d net.Dialer
		tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		}
	} else {
		var err error
		if token, err = a.token(); err != nil {
			return nil, nil, err
		}
		if token == "" {
			return nil, nil, usagef("no API token: set RUNCOMFY_TOKEN (or RUNCOMFY_API_TOKEN), or pass --token-file; try --fake to run against the built-in simulated API")
		}
	}
	// Every worker may hold a connection to the API and one to the file host.
	tr.MaxIdleConnsPerHost = concurrency + 4
	c, err := runcomfy.New(runcomfy.Options{
		BaseURL:    base,
		Token:      token,
		HTTPClient: &http.Client{Transport: tr},
		RPS:        rps,
		Logger:     log,
	})
	if err != nil {
		cleanup()
		return nil, nil, usageError{err}
	}
	return c, cleanup, nil
}

// fakeConfig is how the simulated API behaves behind --fake: quick jobs, so
// the quickstart finishes in seconds; an account that runs 8 jobs at once,
// so that a larger -j queues and the queue positions, reported in the
// result answers runs poll, show a provider backlog as at RunComfy; and
// request ids that a later process answers for, so that a run interrupted
// and run again resumes as it would at RunComfy.
func fakeConfig() runcomfytest.Config {
	return runcomfytest.Config{
		QueueTime:   300 * time.Millisecond,
		RunTime:     1200 * time.Millisecond,
		Jitter:      0.5,
		CostUSD:     0.25,
		MaxRunning:  8,
		Token:       "fake-token",
		PortableIDs: true,
		Answers:     runcomfytest.Answers{ResultQueuePosition: true},
	}
}

func (o runFlags) flags() lifecycle.Flags {
	return lifecycle.Flags{RetryFailed: o.retryFailed, ResubmitUnknown: o.resubmitUnknown, SubmitOnly: o.submitOnly}
}

// sources are the files that decide the manifest's jobs, for the no-op
// check: the manifest, the schema files, this binary.
func (a *app) sources(path string, o runFlags, out string) runner.Sources {
	src := runner.Sources{Manifest: path, OutDir: out}
	if exe, err := os.Executable(); err == nil {
		src.Binary = exe
	}
	for _, s := range o.schemas {
		if _, p, ok := strings.Cut(s, "="); ok {
			src.Schemas = append(src.Schemas, p)
		}
	}
	return src
}
