package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"comfybatch/lifecycle"
	"comfybatch/localfile"
	"comfybatch/runcomfy"
	"comfybatch/store"
)

// handle takes one job as far as it can go in this run, doing what
// lifecycle.Next says. It returns an error only when the ledger itself
// failed; what happens to the job at RunComfy is recorded in the ledger.
func (r *run) handle(j store.Job, p *place) error {
	switch lifecycle.Next(j.State, lifecycle.Unchanged, r.flags()) {
	case lifecycle.ActionDownload:
		r.enqueueDownload(j)
		return nil
	case lifecycle.ActionPoll:
		return r.collect(j)
	case lifecycle.ActionSubmit:
		ok, err := r.submit(&j, p)
		if err != nil || !ok || r.cfg.SubmitOnly {
			return err
		}
		return r.collect(j)
	}
	return nil
}

// place is a job's hold on one of the -j places at RunComfy (see feed),
// used by the job's worker alone: held while the job is at RunComfy or
// about to be, and lent to another job while it waits to try again a
// submission that created nothing. (It is not given back before the end
// is recorded: a cost reported with it must count before the next job is
// admitted under --max-cost.)
type place struct {
	slots chan struct{}
	held  bool
}

func (p *place) release() {
	if p.held {
		<-p.slots
		p.held = false
	}
}

func (p *place) take(ctx context.Context) error {
	if p.held {
		return nil
	}
	select {
	case p.slots <- struct{}{}:
		p.held = true
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// reserve takes one submission from the --max-submissions budget.
func (r *run) reserve() bool {
	max := int64(r.cfg.MaxSubmissions)
	for {
		n := r.reserved.Load()
		if max > 0 && n >= max {
			return false
		}
		if r.reserved.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// errCapped ends a refused submission that waited to try again while
// another job took the last submission --max-submissions allowed.
var errCapped = errors.New("--max-submissions reached while the submission waited to be tried again")

// errLedger marks a ledger failure inside the client's BeforeSend hook, so
// that it is told apart from a request that was simply not sent.
type errLedger struct{ err error }

func (e errLedger) Error() string { return e.err.Error() }
func (e errLedger) Unwrap() error { return e.err }

// submit POSTs a job. Submitting is committed when the rate limiter lets
// the POST go, right before it is written, so a job stopped while waiting
// stays as it was; the request id is committed the moment it is back. It
// reports whether the job is now at RunComfy.
func (r *run) submit(j *store.Job, p *place) (bool, error) { return r.submitAfter(j, p, nil) }

// submitAfter is submit with prepare, when given, run once the POST is
// about to go (the body built, a place under --max-submissions taken) and
// before the job is marked submitting: an error from it sends nothing.
func (r *run) submitAfter(j *store.Job, p *place, prepare func() error) (bool, error) {
	if r.intake.Err() != nil {
		return false, nil
	}
	mj, ok := r.cfg.Manifest.Job(j.ID)
	if !ok { // feed hands out only the manifest's jobs to submit
		return false, fmt.Errorf("job %s: not in the manifest", j.ID)
	}
	// Local files become what the body carries now, at submit time: the
	// ledger keeps their paths and hashes, never a data: URI.
	body, err := localfile.Body(r.intake, mj.Input, r.cfg.Manifest.Dir, r.sender())
	if err != nil {
		if r.intake.Err() == nil {
			r.log.Warn("not submitted: a local file of its input could not be sent; it stays pending", "job", j.ID, "error", err)
		}
		return false, nil
	}
	if !r.reserve() {
		r.capped.Add(1)
		return false, nil
	}
	if prepare != nil {
		if err := prepare(); err != nil {
			r.reserved.Add(-1)
			return false, err
		}
	}
	reserved := true // this job's submission counts under --max-submissions
	unreserve := func() {
		if reserved {
			r.reserved.Add(-1)
			reserved = false
		}
	}
	// A refused plain submission lends its submission with its place: the
	// job it lets in would otherwise be capped on a submission that may
	// never happen. A redo keeps it: its files are in the history by now,
	// and capped it would be left pending for a later run to pay for
	// without --redo-rejected.
	lendSubmission := prepare == nil
	began := false
	opts := runcomfy.SubmitOptions{
		Intake: r.intake,
		BeforeSend: func() error {
			if began {
				return nil // retried at once after a refusal: still recorded
			}
			if err := r.intake.Err(); err != nil {
				return err
			}
			if err := r.cfg.Store.Apply(r.work, j.ID, lifecycle.Step{To: lifecycle.Submitting}); err != nil {
				return errLedger{err}
			}
			began = true
			return nil
		},
		// While a refused submission waits to be tried again the job is
		// not at RunComfy: its place serves another job meanwhile.
		Between: func(ctx context.Context, d time.Duration, refused error) error {
			if d <= 0 {
				return ctx.Err()
			}
			// Nothing was created, and the wait may last minutes (a
			// Retry-After): meanwhile the ledger says what lifecycle makes
			// of the refusal (pending), so that a crash leaves the job to
			// be submitted again, not unknown.
			if d := lifecycle.Submit(runcomfy.AnswerOf(refused), ""); began && d.To == lifecycle.Pending {
				if err := r.cfg.Store.Apply(r.work, j.ID, d.Step); err != nil {
					return errLedger{err}
				}
				began = false
			}
			p.release()
			if lendSubmission {
				unreserve()
			}
			if err := r.cfg.Sleep(ctx, d); err != nil {
				return err
			}
			if !reserved {
				if !r.reserve() {
					return errCapped
				}
				reserved = true
			}
			return p.take(ctx)
		},
	}
	// The POST runs under the work context: a first Ctrl-C ends the intake
	// but lets a request on the wire finish, so that its request id is
	// heard and saved.
	resp, err := r.cfg.API.Submit(r.work, j.Model, json.RawMessage(body), opts)
	if !began {
		unreserve()
		var le errLedger
		if errors.As(err, &le) {
			return false, le.err
		}
		if errors.Is(err, errCapped) {
			r.capped.Add(1) // said by the run's warning, not once per job
		}
		return false, nil // not sent since it was last recorded pending
	}
	d := lifecycle.Submit(runcomfy.AnswerOf(err), string(resp.RequestID))
	if d.To == lifecycle.Queued {
		if err := r.saveAnswer(j.ID, d.Step); err != nil {
			return false, fmt.Errorf("job %s: request %s was created but could not be saved: %w", j.ID, d.RequestID, err)
		}
		r.submitted.Add(1)
		j.State, j.RequestID = lifecycle.Queued, d.RequestID
		j.SubmittedAt = r.cfg.Now().UTC().Format(time.RFC3339Nano)
		r.log.Debug("submitted", "job", j.ID, "request_id", d.RequestID)
		return true, nil
	}
	if d.To == lifecycle.Pending {
		unreserve()
	}
	// RunComfy has answered: what it said lands, tried like a request id
	// (or the next start calls the job unknown, which a 4xx or a 429 did
	// not make it).
	if werr := r.saveAnswer(j.ID, d.Step); werr != nil {
		return false, werr
	}
	switch {
	case r.unreachableStop(err):
		// Not sent (lifecycle.Submit made it pending again): said once,
		// by the run's error, not once per job.
	case d.StopAccount:
		r.accountStop(err)
	case d.To == lifecycle.Unknown:
		r.log.Warn("submission outcome unknown: the job may be running and billed; it is parked as unknown (see --resubmit-unknown)", "job", j.ID, "error", d.Error)
	case d.To == lifecycle.Failed:
		r.log.Warn("submission rejected", "job", j.ID, "error", d.Error)
	case r.intake.Err() == nil:
		r.log.Warn("submission not accepted; the job stays pending for the next run", "job", j.ID, "error", d.Error)
	}
	return false, nil
}

// saveWaits are the pauses between the tries to save a new request id: three
// tries in all, about a second and a quarter, enough for a failed group commit
// (which fails every write in its group, ours included) or a brief I/O error
// to pass, short enough that a ledger that is really broken stops the run soon.
var saveWaits = [...]time.Duration{250 * time.Millisecond, time.Second}

// saveAnswer records what a submit answer meant for a job that left
// submitting: above all the request id of a job the API just created. That
// job is paid for: the write is tried a few times, and neither the tries nor
// the waits between them heed any signal (context.WithoutCancel) — a Ctrl-C
// must not be what loses it. If every try fails, a request id is logged at
// Error level, so that the user can find the job in the log; the ledger
// keeps the job in submitting, which the next start turns into unknown.
func (r *run) saveAnswer(id string, step lifecycle.Step) error {
	ctx := context.WithoutCancel(r.work)
	var err error
	for try := 0; ; try++ {
		if err = r.cfg.Store.Apply(ctx, id, step); err == nil {
			return nil
		}
		if errors.Is(err, store.ErrConflict) {
			// The job is no longer in submitting. If an earlier try's write
			// landed although it reported failure, the id is saved; any other
			// conflict will not go away by trying again.
			if j, jerr := r.cfg.Store.Job(ctx, id); jerr == nil && j.State == step.To && j.RequestID == step.RequestID {
				return nil
			}
			break
		}
		if try == len(saveWaits) || errors.Is(err, store.ErrClosed) || errors.Is(err, store.ErrDuplicateRequest) {
			break
		}
		r.log.Warn("saving the submit answer failed; trying again", "job", id, "request_id", step.RequestID, "error", err)
		if serr := r.cfg.Sleep(ctx, saveWaits[try]); serr != nil {
			break
		}
	}
	if step.RequestID != "" {
		r.log.Error("a job was created at RunComfy and may be billed, but its request id could not be saved in the ledger; note it to collect or cancel it by hand",
			"job", id, "request_id", step.RequestID, "error", err)
	}
	return err
}

// collect polls a submitted job until lifecycle.Poll settles or parks it,
// records each answer that changes something, and downloads the outputs of
// a job that completed. Polls stop at the first signal.
func (r *run) collect(j store.Job) error {
	start := r.cfg.Now()
	if t, err := time.Parse(time.RFC3339Nano, j.SubmittedAt); err == nil {
		start = t
	}
	lastRemote, lastPos := j.RemoteStatus, -1
	queuePos := 0
	if j.QueuePosition != nil {
		queuePos, lastPos = *j.QueuePosition, *j.QueuePosition
	}
	var w lifecycle.Watch
	backoff := 0
	model := r.timing.of(j.Model)
	defer model.gone(j.ID)
	lastPoll, aimed := start, AimNone
	for polls := 0; ; polls++ {
		aim, ok := r.awaitPoll(model, j.ID, PollState{Polls: polls, QueuePos: queuePos, Aimed: aimed}, start, lastPoll, backoff)
		if !ok {
			return nil
		}
		aimed = max(aimed, aim)
		res, err := r.cfg.API.Result(r.intake, j.RequestID)
		if r.intake.Err() != nil || r.unreachableStop(err) {
			return nil
		}
		lastPoll = r.cfg.Now()
		age := lastPoll.Sub(start)
		var d lifecycle.PollDecision
		d, w = lifecycle.Poll(j.State, w, pollAnswer(res, err), age)
		backoff = d.Backoff
		if err == nil && d.Verdict == lifecycle.KeepPolling {
			model.seen(j.ID, age)
		}
		if d.Warn != "" {
			r.log.Warn(d.Warn, "job", j.ID, "request_id", j.RequestID)
		}
		switch d.Verdict {
		case lifecycle.StopAccount:
			r.accountStop(err)
			return nil
		case lifecycle.Park:
			r.log.Warn(d.Why, "job", j.ID, "request_id", j.RequestID, "error", errText(err))
			if d.Step != nil {
				return r.cfg.Store.Apply(r.work, j.ID, *d.Step)
			}
			return nil
		}
		if d.Why != "" {
			r.log.Info(d.Why, "job", j.ID, "request_id", j.RequestID, "error", errText(err))
		}
		step := d.Step
		if step == nil {
			continue
		}
		pos := -1
		if step.QueuePosition != nil {
			pos = *step.QueuePosition
		}
		if d.Verdict == lifecycle.KeepPolling && step.To == j.State && step.Remote == lastRemote && pos == lastPos {
			continue // nothing new: no write
		}
		if err := r.cfg.Store.Apply(r.work, j.ID, *step); err != nil {
			return err
		}
		j.State, lastRemote, lastPos, queuePos = step.To, step.Remote, pos, max(pos, 0)
		if d.Verdict != lifecycle.Settle {
			continue
		}
		if step.To == lifecycle.Completed {
			// Only a result teaches how long the model's jobs take: a
			// request gone missing or cancelled says nothing of it, and
			// its age would pull every later poll late.
			r.timing.add(j.Model, took(res, age))
		}
		if c := r.costs; c != nil && step.Cost != nil {
			c.reported(j.ID, j.Model, *step.Cost)
		}
		if step.To != lifecycle.Completed {
			return nil
		}
		j.RemoteStatus, j.Outputs = step.Remote, step.Outputs
		r.enqueueDownload(j)
		return nil
	}
}

// awaitPoll waits until a job is due its next poll, which PollInterval
// decides from p (Polls and QueuePos filled in), what the run knows of the
// model, and, for a job waiting on its model's scouts, each job of the model
// that finishes meanwhile. It says false when the intake ended.
func (r *run) awaitPoll(model *durations, id string, p PollState, start, lastPoll time.Time, backoff int) (Aim, bool) {
	for {
		// The news is taken before what is known, so that a job finishing
		// between the two is not missed.
		news := model.newsOf()
		now := r.cfg.Now()
		p.Age, p.Since = now.Sub(start), now.Sub(lastPoll)
		typ := model.get()
		p.Scout = false
		plan := PollInterval(p, typ, r.cfg.PollMax)
		if plan.UntilNews && model.scout(id) {
			p.Scout = true
			plan = PollInterval(p, typ, r.cfg.PollMax)
		}
		wait := plan.Wait
		if backoff > 0 {
			wait += runcomfy.Backoff(backoff-1, time.Second, r.cfg.PollMax, rand.Float64())
		}
		if !plan.UntilNews {
			return plan.Aim, r.cfg.Sleep(r.intake, wait) == nil
		}
		ctx, cancel := context.WithCancel(r.intake)
		stop := context.AfterFunc(news, cancel)
		err := r.cfg.Sleep(ctx, wait)
		stop()
		cancel()
		switch {
		case r.intake.Err() != nil:
			return AimNone, false
		case err == nil:
			return AimNone, true // waited the longest a job may go unpolled
		}
		// A job of the model finished: ask again.
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// took is how long a finished job ran: the server's own finished_at minus
// created_at when it gives both, so that our polling lag does not teach the
// next polls to come later still; else the time we took to see it end. The
// server's figure cannot exceed ours (it created the job after we sent it and
// finished before we asked), so a larger one is a clock oddity and ignored.
func took(res runcomfy.Result, seen time.Duration) time.Duration {
	created, err1 := time.Parse(time.RFC3339Nano, res.CreatedAt)
	finished, err2 := time.Parse(time.RFC3339Nano, res.FinishedAt)
	if err1 != nil || err2 != nil {
		return seen
	}
	if d := finished.Sub(created); d >= 0 && d <= seen {
		return d
	}
	return seen
}
