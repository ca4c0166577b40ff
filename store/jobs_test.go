package store

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"comfybatch/lifecycle"
)

func TestHappyPath(t *testing.T) {
	s := newStore(t)
	rep, err := s.Sync(t.Context(), []Spec{spec("a", "fp1")})
	must(t, err)
	if rep.New != 1 || rep.Changed != 0 || rep.Unchanged != 0 {
		t.Fatalf("Sync report %+v", rep)
	}
	j := job(t, s, "a")
	if j.State != lifecycle.Pending || j.Model != "model-a" || j.Fingerprint != "fp1" || string(j.Input) != string(spec("a", "fp1").Input) ||
		j.Attempts != 0 || j.RequestID != "" || j.CostUSD != nil || len(j.Outputs) != 0 || j.CreatedAt != fixedStamp || j.UpdatedAt != fixedStamp {
		t.Fatalf("new job %+v", j)
	}
	lastEvent(t, s, "a", "", lifecycle.Pending, "added")

	must(t, beginSubmit(t, s, "a"))
	if j := job(t, s, "a"); j.State != lifecycle.Submitting || j.Attempts != 1 {
		t.Fatalf("after BeginSubmit %+v", j)
	}
	lastEvent(t, s, "a", lifecycle.Pending, lifecycle.Submitting, "attempt 1")
	if subs := submissions(t, s, "a"); len(subs) != 1 || subs[0].Attempt != 1 || subs[0].Fingerprint != "fp1" || subs[0].RequestID != "" || subs[0].Outcome != "" {
		t.Fatalf("submissions %+v", subs)
	}

	must(t, submitted(t, s, "a", "req-1"))
	if j := job(t, s, "a"); j.State != lifecycle.Queued || j.RequestID != "req-1" || j.SubmittedAt != fixedStamp {
		t.Fatalf("after Submitted %+v", j)
	}
	lastEvent(t, s, "a", lifecycle.Submitting, lifecycle.Queued, "request req-1")

	must(t, observe(t, s, "a", lifecycle.Running, "in_progress", nil))
	n := len(events(t, s, "a"))
	must(t, observe(t, s, "a", lifecycle.Running, "in_progress", nil))
	if got := len(events(t, s, "a")); got != n {
		t.Fatalf("a repeated poll wrote %d event(s)", got-n)
	}
	if j := job(t, s, "a"); j.State != lifecycle.Running || j.RemoteStatus != "in_progress" {
		t.Fatalf("after Observe %+v", j)
	}
	lastEvent(t, s, "a", lifecycle.Queued, lifecycle.Running, "remote status in_progress")

	outs := []string{"https://cdn/a/0.png", "https://cdn/a/1.png"}
	must(t, completed(t, s, "a", "succeeded", outs, ptr(0.75)))
	j = job(t, s, "a")
	if j.State != lifecycle.Completed || !reflect.DeepEqual(j.Outputs, outs) || j.CostUSD == nil || *j.CostUSD != 0.75 ||
		j.RemoteStatus != "succeeded" || j.FinishedAt != fixedStamp || j.QueuePosition != nil {
		t.Fatalf("after Completed %+v", j)
	}
	lastEvent(t, s, "a", lifecycle.Running, lifecycle.Completed, "2 output(s)")

	f0 := File{N: 0, URL: outs[0], Path: "a/0.png", Bytes: 10, SHA256: "aa"}
	f1 := File{N: 1, URL: outs[1], Path: "a/1.png", Bytes: 11, SHA256: "bb"}
	must(t, s.FileSaved(t.Context(), "a", f1))
	must(t, s.FileSaved(t.Context(), "a", f0))
	must(t, s.FileSaved(t.Context(), "a", f0)) // saving again replaces, not duplicates
	if fs := files(t, s, "a"); !reflect.DeepEqual(fs, []File{f0, f1}) {
		t.Fatalf("files %+v", fs)
	}
	must(t, markDone(t, s, "a"))
	if j := job(t, s, "a"); j.State != lifecycle.Done {
		t.Fatalf("after MarkDone %+v", j)
	}
	lastEvent(t, s, "a", lifecycle.Completed, lifecycle.Done, "")

	var want []Event
	for _, e := range [][3]string{
		{"", "pending", "added"},
		{"pending", "submitting", "attempt 1"},
		{"submitting", "queued", "request req-1"},
		{"queued", "running", "remote status in_progress"},
		{"running", "completed", "2 output(s)"},
		{"completed", "done", ""},
	} {
		want = append(want, Event{JobID: "a", At: fixedStamp, From: lifecycle.State(e[0]), To: lifecycle.State(e[1]), Detail: e[2]})
	}
	got := events(t, s, "a")
	for i := range got {
		if i > 0 && got[i].Seq <= got[i-1].Seq {
			t.Fatalf("events out of order: %+v", got)
		}
		got[i].Seq = 0
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("events\n got %+v\nwant %+v", got, want)
	}

	subs := submissions(t, s, "a")
	if len(subs) != 1 || subs[0].RequestID != "req-1" || subs[0].Outcome != "completed" || subs[0].CostUSD == nil || *subs[0].CostUSD != 0.75 {
		t.Fatalf("submissions %+v", subs)
	}
	if v := spent(t, s); v != 0.75 {
		t.Fatalf("spent %v", v)
	}
	var outputs []Output
	must(t, s.EachOutput(t.Context(), func(o Output) error { outputs = append(outputs, o); return nil }))
	if len(outputs) != 2 || outputs[0].File != f0 || outputs[1].File != f1 || outputs[0].RequestID != "req-1" || outputs[0].Model != "model-a" {
		t.Fatalf("outputs %+v", outputs)
	}
	counts, err := s.Counts(t.Context())
	must(t, err)
	if !reflect.DeepEqual(counts, map[lifecycle.State]int{lifecycle.Done: 1}) {
		t.Fatalf("counts %v", counts)
	}
}

func TestObserve(t *testing.T) {
	s := newStore(t)
	_, err := s.Sync(t.Context(), []Spec{spec("q", "fp"), spec("r", "fp")})
	must(t, err)
	toState(t, s, "q", lifecycle.Queued)
	toState(t, s, "r", lifecycle.Running)

	// Queue position is kept up to date without an event per poll.
	must(t, observe(t, s, "q", lifecycle.Queued, "in_queue", ptr(3)))
	lastEvent(t, s, "q", lifecycle.Queued, lifecycle.Queued, "remote status in_queue")
	n := len(events(t, s, "q"))
	must(t, observe(t, s, "q", lifecycle.Queued, "in_queue", ptr(2)))
	if j := job(t, s, "q"); j.QueuePosition == nil || *j.QueuePosition != 2 || j.State != lifecycle.Queued {
		t.Fatalf("after second poll %+v", j)
	}
	if len(events(t, s, "q")) != n {
		t.Fatal("a poll that changed only the queue position wrote an event")
	}
	// Running back to queued is allowed (queued ⇄ running).
	must(t, observe(t, s, "r", lifecycle.Queued, "in_queue", nil))
	lastEvent(t, s, "r", lifecycle.Running, lifecycle.Queued, "remote status in_queue")

	// An undocumented status keeps the state and is stored verbatim.
	for _, id := range []string{"q", "r"} {
		before := job(t, s, id)
		must(t, observe(t, s, id, "", "Paused — by Operator ", nil))
		j := job(t, s, id)
		if j.State != before.State || j.RemoteStatus != "Paused — by Operator " {
			t.Fatalf("after unknown status %+v", j)
		}
		lastEvent(t, s, id, before.State, before.State, "remote status Paused — by Operator ")
		n := len(events(t, s, id))
		must(t, observe(t, s, id, "", "Paused — by Operator ", nil))
		if len(events(t, s, id)) != n {
			t.Fatal("the same unknown status twice wrote two events")
		}
	}
}

// unchanged asserts that a refused transition left no trace.
type record struct {
	Job    Job
	Events []Event
	Subs   []Submission
	Files  []File
	Spent  float64
}

func recordOf(t *testing.T, s *Store, id string) record {
	t.Helper()
	return record{job(t, s, id), events(t, s, id), submissions(t, s, id), files(t, s, id), spent(t, s)}
}

// TestTransitionFromWrongStateConflicts makes each transition a run makes,
// with its payload, from every state. Every transition is now a Step, and
// whether it is allowed depends only on the edge from the job's state to
// the Step's To (lifecycle.Edges): the table below is written out by hand
// and checked against lifecycle.Allowed, so that neither drifts unseen.
func TestTransitionFromWrongStateConflicts(t *testing.T) {
	type call struct {
		name string
		to   func(cur lifecycle.State) lifecycle.State // the Step's To
		do   func(t testing.TB, s *Store, id string) error
	}
	to := func(st lifecycle.State) func(lifecycle.State) lifecycle.State {
		return func(lifecycle.State) lifecycle.State { return st }
	}
	calls := []call{
		{"BeginSubmit", to(lifecycle.Submitting), func(t testing.TB, s *Store, id string) error { return beginSubmit(t, s, id) }},
		{"Submitted", to(lifecycle.Queued), func(t testing.TB, s *Store, id string) error { return submitted(t, s, id, "req-x") }},
		{"SubmitFailed", to(lifecycle.Failed), func(t testing.TB, s *Store, id string) error {
			return submitFailed(t, s, id, lifecycle.Failed, "bad input")
		}},
		{"ObserveRunning", to(lifecycle.Running), func(t testing.TB, s *Store, id string) error {
			return observe(t, s, id, lifecycle.Running, "in_progress", nil)
		}},
		{"ObserveQueued", to(lifecycle.Queued), func(t testing.TB, s *Store, id string) error {
			return observe(t, s, id, lifecycle.Queued, "in_queue", ptr(1))
		}},
		{"ObserveKeep", func(cur lifecycle.State) lifecycle.State { return cur }, func(t testing.TB, s *Store, id string) error {
			return observe(t, s, id, "", "succeeded", ptr(1))
		}},
		{"Completed", to(lifecycle.Completed), func(t testing.TB, s *Store, id string) error {
			return completed(t, s, id, "succeeded", []string{"u"}, ptr(9.0))
		}},
		{"Failed", to(lifecycle.Failed), func(t testing.TB, s *Store, id string) error {
			return failed(t, s, id, "failed", "boom", ptr(9.0))
		}},
		{"Cancelled", to(lifecycle.Cancelled), func(t testing.TB, s *Store, id string) error {
			return cancelled(t, s, id, "cancelled", "by user")
		}},
		{"SetOutputs", to(lifecycle.Completed), func(t testing.TB, s *Store, id string) error { return setOutputs(t, s, id, []string{"v"}) }},
		{"MarkDone", to(lifecycle.Done), func(t testing.TB, s *Store, id string) error { return markDone(t, s, id) }},
		{"Redownload", to(lifecycle.Completed), func(t testing.TB, s *Store, id string) error { return redownload(t, s, id, "missing") }},
		{"LastFileSaved", to(lifecycle.Done), func(t testing.TB, s *Store, id string) error {
			return lastFileSaved(t, s, id, File{N: 0, URL: "w", Path: id + "/9.png", Bytes: 9, SHA256: "ff"})
		}},
	}
	// allowed[state] lists the calls whose edge that state may take.
	allowed := map[lifecycle.State][]string{
		lifecycle.Pending:    {"BeginSubmit"}, // pending → pending is an input change: Sync only
		lifecycle.Submitting: {"Submitted", "SubmitFailed", "Failed"},
		lifecycle.Queued: {"Submitted", "SubmitFailed", "ObserveRunning", "ObserveQueued", "ObserveKeep",
			"Completed", "Failed", "Cancelled", "SetOutputs"},
		lifecycle.Running: {"Submitted", "SubmitFailed", "ObserveRunning", "ObserveQueued", "ObserveKeep",
			"Completed", "Failed", "Cancelled", "SetOutputs"},
		// A completed result is paid for: it no longer fails or is
		// cancelled; it is downloaded, or its URLs are refreshed.
		lifecycle.Completed: {"Completed", "SetOutputs", "MarkDone", "LastFileSaved"},
		lifecycle.Done:      {"Completed", "SetOutputs", "Redownload"}, // done → completed: download again
		// Settled without output: only a new submission may follow.
		lifecycle.Failed:    {"BeginSubmit"},
		lifecycle.Cancelled: {"BeginSubmit"},
		lifecycle.Unknown:   {"BeginSubmit"},
	}
	// invalid[state] lists the calls whose edge is allowed but whose Step
	// the ledger refuses all the same: a job leaves submitting for queued
	// only with its request id, and is completed only with its outputs (a
	// done job going back to completed keeps the ones it has).
	invalid := map[lifecycle.State][]string{
		lifecycle.Submitting: {"ObserveQueued"},
		lifecycle.Queued:     {"Redownload"},
		lifecycle.Running:    {"Redownload"},
		lifecycle.Completed:  {"ObserveKeep", "Redownload"},
	}
	if len(allowed) != len(lifecycle.States) {
		t.Fatalf("the table covers %d states of %d", len(allowed), len(lifecycle.States))
	}
	for _, st := range lifecycle.States {
		for _, c := range calls {
			ok, bad := hasName(allowed[st], c.name), hasName(invalid[st], c.name)
			if edge := applyable(st, c.to(st)); edge != (ok || bad) {
				t.Errorf("the table says %s from %s is allowed=%v, lifecycle.Allowed(%s, %s) = %v", c.name, st, ok || bad, st, c.to(st), edge)
			}
			if ok {
				// The positive control: the same call from a state that
				// allows it goes through, so a refusal below is the
				// state rule and not a broken call.
				t.Run(string(st)+"/"+c.name+"/allowed", func(t *testing.T) {
					s := newStore(t)
					_, err := s.Sync(t.Context(), []Spec{spec("a", "fp")})
					must(t, err)
					reachState(t, s, "a", st)
					if err := c.do(t, s, "a"); err != nil {
						t.Fatalf("%s from %s = %v, want it allowed", c.name, st, err)
					}
					if got := job(t, s, "a").State; got != c.to(st) {
						t.Fatalf("%s from %s left the job %s, want %s", c.name, st, got, c.to(st))
					}
				})
				continue
			}
			t.Run(string(st)+"/"+c.name, func(t *testing.T) {
				s := newStore(t)
				_, err := s.Sync(t.Context(), []Spec{spec("a", "fp")})
				must(t, err)
				reachState(t, s, "a", st)
				before := recordOf(t, s, "a")
				if before.Job.State != st {
					t.Fatalf("set up %s, got %s", st, before.Job.State)
				}
				err = c.do(t, s, "a")
				switch {
				case bad:
					if err == nil || errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "request id") && !strings.Contains(err.Error(), "needs its outputs") {
						t.Fatalf("%s from %s = %v, want a refusal for the missing request id or outputs", c.name, st, err)
					}
				case !errors.Is(err, ErrConflict):
					t.Fatalf("%s from %s = %v, want ErrConflict", c.name, st, err)
				}
				if after := recordOf(t, s, "a"); !reflect.DeepEqual(before, after) {
					t.Fatalf("refused %s changed the ledger:\nbefore %+v\nafter  %+v", c.name, before, after)
				}
			})
		}
	}
}

// reachState brings a freshly added job to st: along the happy path, or
// for the states off it (failed, cancelled, unknown) the way a run gets
// there, so that the job also carries that path's error, cost and history.
func reachState(t *testing.T, s *Store, id string, st lifecycle.State) {
	t.Helper()
	switch st {
	case lifecycle.Failed:
		toState(t, s, id, lifecycle.Queued)
		must(t, failed(t, s, id, "failed", "CUDA out of memory", ptr(0.1)))
	case lifecycle.Cancelled:
		toState(t, s, id, lifecycle.Running)
		must(t, cancelled(t, s, id, "cancelled", "cancelled at RunComfy"))
	case lifecycle.Unknown:
		toState(t, s, id, lifecycle.Submitting)
		n, err := s.Recover(t.Context())
		must(t, err)
		if n != 1 {
			t.Fatalf("Recover = %d, want 1", n)
		}
	default:
		toState(t, s, id, st)
	}
	if got := job(t, s, id).State; got != st {
		t.Fatalf("job %s: reached %s, want %s", id, got, st)
	}
}

func hasName(list []string, n string) bool {
	for _, x := range list {
		if x == n {
			return true
		}
	}
	return false
}

func TestTransitionOfUnknownJob(t *testing.T) {
	s := newStore(t)
	if err := beginSubmit(t, s, "nope"); err == nil {
		t.Fatal("BeginSubmit of a job not in the ledger succeeded")
	}
	if err := observe(t, s, "nope", lifecycle.Running, "x", nil); err == nil {
		t.Fatal("Observe of a job not in the ledger succeeded")
	}
	if err := markDone(t, s, "nope"); err == nil || !strings.Contains(err.Error(), "not in the ledger") {
		t.Fatalf("MarkDone of a job not in the ledger = %v", err)
	}
	if err := s.FileSaved(t.Context(), "nope", File{Path: "x"}); err == nil {
		t.Fatal("FileSaved of a job not in the ledger succeeded")
	}
	if _, err := s.Job(t.Context(), "nope"); err == nil {
		t.Fatal("Job of a job not in the ledger succeeded")
	}
}

func TestRecover(t *testing.T) {
	s := newStore(t)
	_, err := s.Sync(t.Context(), []Spec{spec("a", "fp"), spec("b", "fp"), spec("c", "fp"), spec("d", "fp")})
	must(t, err)
	toState(t, s, "a", lifecycle.Submitting)
	toState(t, s, "b", lifecycle.Submitting)
	toState(t, s, "c", lifecycle.Queued)
	before := recordOf(t, s, "c")

	n, err := s.Recover(t.Context())
	must(t, err)
	if n != 2 {
		t.Fatalf("Recover = %d, want 2", n)
	}
	for _, id := range []string{"a", "b"} {
		const why = "submission was cut off before its request id was saved; it may be running and billed"
		if j := job(t, s, id); j.State != lifecycle.Unknown || j.Error != why {
			t.Fatalf("%s after Recover: %+v", id, j)
		}
		lastEvent(t, s, id, lifecycle.Submitting, lifecycle.Unknown, why)
		if subs := submissions(t, s, id); len(subs) != 1 || subs[0].Outcome != "unknown" || subs[0].RequestID != "" {
			t.Fatalf("%s submissions %+v", id, subs)
		}
	}
	if after := recordOf(t, s, "c"); !reflect.DeepEqual(before, after) {
		t.Fatal("Recover touched a queued job")
	}
	if j := job(t, s, "d"); j.State != lifecycle.Pending {
		t.Fatalf("Recover touched a pending job: %+v", j)
	}
	if n, err := s.Recover(t.Context()); err != nil || n != 0 {
		t.Fatalf("second Recover = %d, %v", n, err)
	}
	// An unknown job may be resubmitted when the user says so.
	must(t, beginSubmit(t, s, "a"))
	if j := job(t, s, "a"); j.Attempts != 2 || j.State != lifecycle.Submitting || j.Error != "" {
		t.Fatalf("resubmitted after Recover: %+v", j)
	}
}

func TestSubmitFailed(t *testing.T) {
	for _, to := range []lifecycle.State{lifecycle.Pending, lifecycle.Failed, lifecycle.Unknown} {
		t.Run(string(to), func(t *testing.T) {
			s := newStore(t)
			_, err := s.Sync(t.Context(), []Spec{spec("a", "fp")})
			must(t, err)
			toState(t, s, "a", lifecycle.Submitting)
			must(t, submitFailed(t, s, "a", to, "HTTP 422: bad seed"))
			j := job(t, s, "a")
			if j.State != to || j.Error != "HTTP 422: bad seed" || j.RequestID != "" {
				t.Fatalf("after SubmitFailed %+v", j)
			}
			lastEvent(t, s, "a", lifecycle.Submitting, to, "HTTP 422: bad seed")
			if subs := submissions(t, s, "a"); len(subs) != 1 || subs[0].Outcome != string(to) {
				t.Fatalf("submissions %+v", subs)
			}
			// Each of these may be submitted again, as a new attempt.
			must(t, beginSubmit(t, s, "a"))
			if j := job(t, s, "a"); j.Attempts != 2 || j.Error != "" || j.State != lifecycle.Submitting {
				t.Fatalf("resubmission: attempt %d, %+v", j.Attempts, j)
			}
			if subs := submissions(t, s, "a"); len(subs) != 2 || subs[1].Attempt != 2 || subs[1].Outcome != "" {
				t.Fatalf("submissions %+v", subs)
			}
		})
	}
}

// A new attempt starts with nothing of the last one's request: not its id,
// not when it was submitted (found in review: nothing failed when
// submitted_at was kept, so status showed the earlier POST's time for one
// that never got an answer).
func TestNewAttemptForgetsTheLastRequest(t *testing.T) {
	s := newStore(t)
	_, err := s.Sync(t.Context(), []Spec{spec("a", "fp")})
	must(t, err)
	toState(t, s, "a", lifecycle.Queued)
	if j := job(t, s, "a"); j.RequestID == "" || j.SubmittedAt == "" {
		t.Fatalf("queued without its request: %+v", j)
	}
	must(t, submitFailed(t, s, "a", lifecycle.Failed, "the job failed at RunComfy"))
	must(t, beginSubmit(t, s, "a"))
	must(t, submitFailed(t, s, "a", lifecycle.Unknown, "HTTP 503"))
	if j := job(t, s, "a"); j.RequestID != "" || j.SubmittedAt != "" || j.Attempts != 2 {
		t.Fatalf("second attempt, no answer: request %q submitted at %q, attempt %d; want none, none, 2", j.RequestID, j.SubmittedAt, j.Attempts)
	}
}

func TestFailedAndCancelled(t *testing.T) {
	s := newStore(t)
	_, err := s.Sync(t.Context(), []Spec{spec("f", "fp"), spec("c", "fp")})
	must(t, err)
	toState(t, s, "f", lifecycle.Queued)
	toState(t, s, "c", lifecycle.Running)

	must(t, failed(t, s, "f", "failed", "CUDA out of memory", ptr(0.1)))
	j := job(t, s, "f")
	if j.State != lifecycle.Failed || j.Error != "CUDA out of memory" || j.RemoteStatus != "failed" || j.CostUSD == nil || *j.CostUSD != 0.1 || j.FinishedAt != fixedStamp {
		t.Fatalf("after Failed %+v", j)
	}
	lastEvent(t, s, "f", lifecycle.Queued, lifecycle.Failed, "CUDA out of memory")

	must(t, cancelled(t, s, "c", "cancelled", "cancelled by user"))
	j = job(t, s, "c")
	if j.State != lifecycle.Cancelled || j.Error != "cancelled by user" || j.CostUSD != nil {
		t.Fatalf("after Cancelled %+v", j)
	}
	lastEvent(t, s, "c", lifecycle.Running, lifecycle.Cancelled, "cancelled by user")
	if subs := submissions(t, s, "c"); len(subs) != 1 || subs[0].Outcome != "cancelled" {
		t.Fatalf("submissions %+v", subs)
	}

	// A failed job retried: the job's own cost is reset, the history keeps it.
	toState(t, s, "f", lifecycle.Completed)
	if j := job(t, s, "f"); j.Attempts != 2 || *j.CostUSD != 0.25 {
		t.Fatalf("retried %+v", j)
	}
	subs := submissions(t, s, "f")
	if len(subs) != 2 || subs[0].Outcome != "failed" || *subs[0].CostUSD != 0.1 || subs[1].Outcome != "completed" || *subs[1].CostUSD != 0.25 {
		t.Fatalf("submissions %+v", subs)
	}
	if v := spent(t, s); math.Abs(v-0.35) > 1e-9 {
		t.Fatalf("spent %v, want 0.35", v)
	}
}

// A completed job whose download then fails for good must not forget what
// the completed result cost. It is paid for and its outputs may still be
// fetched, so the ledger no longer lets it fail or be cancelled at all
// (completed → failed and completed → cancelled are not edges): it stays
// completed, with its cost and outputs, for a later run to download.
func TestCompletedCannotFailAndKeepsCost(t *testing.T) {
	s := newStore(t)
	_, err := s.Sync(t.Context(), []Spec{spec("a", "fp")})
	must(t, err)
	toState(t, s, "a", lifecycle.Completed) // cost 0.25
	before := recordOf(t, s, "a")
	err = failed(t, s, "a", "succeeded", "output URL expired and could not be refreshed", nil)
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("failing a completed job = %v, want ErrConflict", err)
	}
	if err := cancelled(t, s, "a", "cancelled", "cancelled by user"); !errors.Is(err, ErrConflict) {
		t.Fatalf("cancelling a completed job = %v, want ErrConflict", err)
	}
	j := job(t, s, "a")
	if j.State != lifecycle.Completed || j.CostUSD == nil || *j.CostUSD != 0.25 || len(j.Outputs) != 1 {
		t.Fatalf("after the refused failure %+v", j)
	}
	if v := spent(t, s); v != 0.25 {
		t.Fatalf("spent %v, want 0.25: a paid result was forgotten", v)
	}
	if after := recordOf(t, s, "a"); !reflect.DeepEqual(before, after) {
		t.Fatalf("a refused failure changed the ledger:\nbefore %+v\nafter  %+v", before, after)
	}
	lastEvent(t, s, "a", lifecycle.Running, lifecycle.Completed, "1 output(s)")
}

func TestRedownloadAndSetOutputs(t *testing.T) {
	s := newStore(t)
	_, err := s.Sync(t.Context(), []Spec{spec("a", "fp")})
	must(t, err)
	toState(t, s, "a", lifecycle.Done)
	before := job(t, s, "a")

	must(t, redownload(t, s, "a", "a/0.png is missing on disk"))
	j := job(t, s, "a")
	if j.State != lifecycle.Completed || !reflect.DeepEqual(j.Outputs, before.Outputs) || j.RequestID != before.RequestID || j.Attempts != 1 {
		t.Fatalf("after Redownload %+v", j)
	}
	lastEvent(t, s, "a", lifecycle.Done, lifecycle.Completed, "a/0.png is missing on disk")

	fresh := []string{"https://cdn/a/0.png?sig=new"}
	must(t, setOutputs(t, s, "a", fresh))
	if j := job(t, s, "a"); j.State != lifecycle.Completed || !reflect.DeepEqual(j.Outputs, fresh) {
		t.Fatalf("after SetOutputs %+v", j)
	}
	lastEvent(t, s, "a", lifecycle.Completed, lifecycle.Completed, "output URLs refreshed")

	must(t, s.FileSaved(t.Context(), "a", File{N: 0, URL: fresh[0], Path: "a/0.png", Bytes: 5, SHA256: "new"}))
	must(t, markDone(t, s, "a"))
	if fs := files(t, s, "a"); len(fs) != 1 || fs[0].URL != fresh[0] || fs[0].SHA256 != "new" {
		t.Fatalf("files %+v", fs)
	}
	if subs := submissions(t, s, "a"); len(subs) != 1 {
		t.Fatalf("redownload resubmitted: %+v", subs)
	}
	if v := spent(t, s); v != 0.25 {
		t.Fatalf("spent %v", v)
	}
}

func TestReads(t *testing.T) {
	s := newStore(t)
	ids := []string{"e", "d", "c", "b", "a"}
	var specs []Spec
	for _, id := range ids {
		specs = append(specs, spec(id, "fp"))
	}
	_, err := s.Sync(t.Context(), specs)
	must(t, err)
	toState(t, s, "d", lifecycle.Running)
	toState(t, s, "b", lifecycle.Done)

	var order []string
	must(t, s.EachJob(t.Context(), func(j Job) error { order = append(order, j.ID); return nil }))
	if !reflect.DeepEqual(order, ids) {
		t.Fatalf("EachJob order %v, want the order added %v", order, ids)
	}
	order = nil
	must(t, s.EachJob(t.Context(), func(j Job) error { order = append(order, j.ID+":"+string(j.State)); return nil }, lifecycle.Running, lifecycle.Done))
	if !reflect.DeepEqual(order, []string{"d:running", "b:done"}) {
		t.Fatalf("EachJob(running, done) %v", order)
	}
	states := map[string]lifecycle.State{}
	must(t, s.EachJobState(t.Context(), func(id string, st lifecycle.State) error { states[id] = st; return nil }))
	if len(states) != 5 || states["d"] != lifecycle.Running || states["a"] != lifecycle.Pending {
		t.Fatalf("EachJobState %v", states)
	}
	var fileJobs []string
	must(t, s.EachFile(t.Context(), func(id string, f File) error { fileJobs = append(fileJobs, id+"/"+f.Path); return nil }))
	if !reflect.DeepEqual(fileJobs, []string{"b/b/0.png"}) {
		t.Fatalf("EachFile %v", fileJobs)
	}
	stop := errors.New("stop")
	if err := s.EachJob(t.Context(), func(Job) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("EachJob did not pass the callback's error back: %v", err)
	}
	counts, err := s.Counts(t.Context())
	must(t, err)
	if !reflect.DeepEqual(counts, map[lifecycle.State]int{lifecycle.Pending: 3, lifecycle.Running: 1, lifecycle.Done: 1}) {
		t.Fatalf("counts %v", counts)
	}
	for _, st := range lifecycle.States {
		if st.InFlight() != (st == lifecycle.Queued || st == lifecycle.Running) {
			t.Fatalf("%s.InFlight() = %v", st, st.InFlight())
		}
		if st.Settled() != (st == lifecycle.Done || st == lifecycle.Failed || st == lifecycle.Cancelled || st == lifecycle.Unknown) {
			t.Fatalf("%s.Settled() = %v", st, st.Settled())
		}
	}
}
