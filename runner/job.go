package runner

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"comfybatch/runcomfy"
	"comfybatch/store"
)

// handle takes one job as far as it can go in this run. It returns an error
// only when the ledger itself failed; what happens to the job at RunComfy is
// recorded in the ledger, not returned.
func (r *run) handle(ctx, parent context.Context, j store.Job) error {
	switch j.State {
	case store.Completed:
		return r.download(ctx, j)
	case store.Queued, store.Running:
		return r.collect(ctx, j)
	}
	ok, err := r.submit(ctx, &j)
	if err != nil || !ok || r.cfg.SubmitOnly {
		return err
	}
	return r.collect(ctx, j)
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

// submit POSTs a job, with the ledger written before and after: submitting is
// committed before the request leaves, the request id the moment it is back.
// It reports whether the job is now at RunComfy.
func (r *run) submit(ctx context.Context, j *store.Job) (bool, error) {
	if ctx.Err() != nil {
		return false, nil
	}
	mj, ok := r.cfg.Manifest.Job(j.ID)
	if !ok { // feed hands out only the manifest's jobs to submit
		return false, fmt.Errorf("job %s: not in the manifest", j.ID)
	}
	if !r.reserve() {
		r.capped.Add(1)
		return false, nil
	}
	if _, err := r.cfg.Store.BeginSubmit(j.ID); err != nil {
		r.reserved.Add(-1)
		return false, err
	}
	// The client lets a POST that is already on the wire finish even when ctx
	// is cancelled, so that an interrupt never strands a created job without
	// its request id.
	resp, err := r.cfg.API.Submit(ctx, j.Model, mj.Input)
	if err == nil && resp.RequestID != "" {
		if err := r.saveRequestID(ctx, j.ID, resp.RequestID); err != nil {
			return false, fmt.Errorf("job %s: request %s was created but could not be saved: %w", j.ID, resp.RequestID, err)
		}
		r.submitted.Add(1)
		j.State, j.RequestID = store.Queued, resp.RequestID
		j.SubmittedAt = r.cfg.Now().UTC().Format(time.RFC3339Nano)
		r.log.Debug("submitted", "job", j.ID, "request_id", resp.RequestID)
		return true, nil
	}
	if err == nil {
		err = errors.New("the API accepted the submission but returned no request id")
	}
	to, msg := submitOutcome(err)
	if to == store.Pending {
		r.reserved.Add(-1)
	}
	if werr := r.cfg.Store.SubmitFailed(j.ID, to, msg); werr != nil {
		return false, werr
	}
	switch {
	case runcomfy.IsAccountError(err):
		r.accountStop(err)
	case to == store.Unknown:
		r.log.Warn("submission outcome unknown: the job may be running and billed; it is parked as unknown (see --resubmit-unknown)", "job", j.ID, "error", err)
	case to == store.Failed:
		r.log.Warn("submission rejected", "job", j.ID, "error", err)
	case ctx.Err() == nil:
		r.log.Warn("submission not accepted; the job stays pending for the next run", "job", j.ID, "error", err)
	}
	return false, nil
}

// saveWaits are the pauses between the tries to save a new request id: three
// tries in all, about a second and a quarter, enough for a failed group commit
// (which fails every write in its group, ours included) or a brief I/O error
// to pass, short enough that a ledger that is really broken stops the run soon.
var saveWaits = [...]time.Duration{250 * time.Millisecond, time.Second}

// saveRequestID records the request id of a job the API just created. The
// POST succeeded, so the job is paid for: the id is tried a few times, and
// the waits between tries ignore an interrupt (context.WithoutCancel) — a
// Ctrl-C must not be what loses it. If every try fails, the id is logged at
// Error level, so that the user can find the job in the log; the ledger keeps
// the job in submitting, which the next start turns into unknown.
func (r *run) saveRequestID(ctx context.Context, id, requestID string) error {
	ctx = context.WithoutCancel(ctx)
	var err error
	for try := 0; ; try++ {
		if err = r.cfg.Store.Submitted(id, requestID); err == nil {
			return nil
		}
		if errors.Is(err, store.ErrConflict) {
			// The job is no longer in submitting. If an earlier try's write
			// landed although it reported failure, the id is saved; any other
			// conflict will not go away by trying again.
			if j, jerr := r.cfg.Store.Job(id); jerr == nil && j.RequestID == requestID {
				return nil
			}
			break
		}
		if try == len(saveWaits) || errors.Is(err, store.ErrClosed) {
			break
		}
		r.log.Warn("saving the request id failed; trying again", "job", id, "request_id", requestID, "error", err)
		if serr := r.cfg.Sleep(ctx, saveWaits[try]); serr != nil {
			break
		}
	}
	r.log.Error("a job was created at RunComfy and may be billed, but its request id could not be saved in the ledger; note it to collect or cancel it by hand",
		"job", id, "request_id", requestID, "error", err)
	return err
}

// submitOutcome decides where a failed submission leaves its job: pending
// only when the answer proves no job was created; failed when the API
// rejected the input for good; unknown whenever a job may exist.
func submitOutcome(err error) (store.State, string) {
	msg := err.Error()
	switch {
	case runcomfy.IsAccountError(err), runcomfy.SubmitNotCreated(err):
		return store.Pending, msg
	case permanent(err):
		return store.Failed, msg
	default:
		return store.Unknown, msg
	}
}

// permanent reports an answer that rejects the request for good: a 4xx other
// than 408 and 429, or an error_code in a 2xx body.
func permanent(err error) bool {
	var e *runcomfy.Error
	if !errors.As(err, &e) || runcomfy.IsTransient(err) {
		return false
	}
	return (e.HTTPStatus >= 400 && e.HTTPStatus < 500) || (e.Code != 0 && e.HTTPStatus < 300)
}

// pollErrorTries is how many polls in a row may answer an error that is
// neither transient, nor "not found", nor an account error (a 403, an
// error_code in a 2xx body, a body that does not parse) before this run stops
// polling the job. Such an answer says nothing about the job itself, which
// may still be running and billed, so it never marks the job failed: that
// would let --retry-failed pay for it twice. A few tries, with a backoff on
// top of the poll schedule, are worth their two extra GETs because a garbled
// body or a 403 from a proxy in front of the API can be a one-off; past that
// the job is left queued/running in the ledger for the next run to poll,
// rather than polled without end in this one.
const pollErrorTries = 3

// collect polls a submitted job until it ends, records the result, and
// downloads its outputs. Only the server's word ends a job here: a failed
// status, a finished job without outputs, or a request it no longer knows.
func (r *run) collect(ctx context.Context, j store.Job) error {
	start := r.cfg.Now()
	if t, err := time.Parse(time.RFC3339Nano, j.SubmittedAt); err == nil {
		start = t
	}
	lastStatus, lastPos := j.RemoteStatus, -1
	queuePos := 0
	if j.QueuePosition != nil {
		queuePos, lastPos = *j.QueuePosition, *j.QueuePosition
	}
	pollErrors := 0 // answers in a row that were neither a status nor transient
	missing := 0    // of those, the API's own "request missing or expired"
	for polls := 0; ; polls++ {
		wait := PollInterval(polls, r.cfg.Now().Sub(start), queuePos, r.timing.get(), r.cfg.PollMax)
		if pollErrors > 0 {
			wait += runcomfy.Backoff(pollErrors-1, time.Second, r.cfg.PollMax, rand.Float64())
		}
		if err := r.cfg.Sleep(ctx, wait); err != nil {
			return nil
		}
		res, err := r.cfg.API.Result(ctx, j.RequestID)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			switch {
			case runcomfy.IsAccountError(err):
				r.accountStop(err)
				return nil
			case runcomfy.IsTransient(err):
				r.log.Warn("poll failed; trying again", "job", j.ID, "error", err)
				continue
			}
			// Only RunComfy's own "request missing or expired", given every
			// time, fails the job: a bare 404 may come from anything between
			// (a proxy, another --api-base) while the job runs and is billed.
			if runcomfy.IsMissing(err) {
				missing++
			} else {
				missing = 0
			}
			if pollErrors++; pollErrors < pollErrorTries {
				r.log.Warn("poll answered an error; trying again", "job", j.ID, "request_id", j.RequestID, "error", err)
				continue
			}
			if missing == pollErrorTries {
				return r.cfg.Store.Failed(j.ID, j.RemoteStatus, "request "+j.RequestID+" is missing or expired at RunComfy: "+err.Error(), nil)
			}
			r.log.Warn("poll keeps answering an error; the job may still be running and billed, so it stays "+string(j.State)+" in the ledger and the next run polls it again",
				"job", j.ID, "request_id", j.RequestID, "error", err)
			return nil
		}
		pollErrors = 0
		status := res.Status
		switch {
		case runcomfy.Finished(status):
			r.timing.add(took(res, r.cfg.Now().Sub(start)))
			urls := runcomfy.OutputURLs(res.Output)
			if len(urls) == 0 {
				msg := runcomfy.ErrorText(res.Error)
				if msg == "" {
					msg = "the job finished without any output URL"
				}
				return r.cfg.Store.Failed(j.ID, status, msg, res.Cost)
			}
			if err := r.cfg.Store.Completed(j.ID, status, urls, res.Cost); err != nil {
				return err
			}
			j.State, j.RemoteStatus, j.Outputs = store.Completed, status, urls
			return r.download(ctx, j)
		case status == runcomfy.StatusFailed:
			msg := runcomfy.ErrorText(res.Error)
			if msg == "" {
				msg = "the job failed at RunComfy without a message"
			}
			return r.cfg.Store.Failed(j.ID, status, msg, res.Cost)
		case status == runcomfy.StatusCancelled || status == runcomfy.StatusCanceled:
			return r.cfg.Store.Cancelled(j.ID, status, "cancelled at RunComfy")
		}
		queuePos = 0
		if res.QueuePosition != nil {
			queuePos = *res.QueuePosition
		}
		if status == lastStatus && queuePos == lastPos {
			continue
		}
		var st store.State
		switch status {
		case runcomfy.StatusInQueue:
			st = store.Queued
		case runcomfy.StatusInProgress:
			st = store.Running
		default:
			r.log.Info("unknown remote status; polling on", "job", j.ID, "status", status)
		}
		var qp *int
		if res.QueuePosition != nil {
			qp = &queuePos
		}
		if err := r.cfg.Store.Observe(j.ID, st, status, qp); err != nil {
			return err
		}
		lastStatus, lastPos = status, queuePos
		j.RemoteStatus = status
		if st != "" {
			j.State = st
		}
	}
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
