package store

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestHappyPath(t *testing.T) {
	s := newStore(t)
	rep, err := s.Sync([]Spec{spec("a", "fp1")})
	must(t, err)
	if rep.New != 1 || rep.Changed != 0 || rep.Unchanged != 0 {
		t.Fatalf("Sync report %+v", rep)
	}
	j := job(t, s, "a")
	if j.State != Pending || j.Model != "model-a" || j.Fingerprint != "fp1" || string(j.Input) != string(spec("a", "fp1").Input) ||
		j.Attempts != 0 || j.RequestID != "" || j.CostUSD != nil || len(j.Outputs) != 0 || j.CreatedAt != fixedStamp || j.UpdatedAt != fixedStamp {
		t.Fatalf("new job %+v", j)
	}
	lastEvent(t, s, "a", "", Pending, "added")

	attempt, err := s.BeginSubmit("a")
	must(t, err)
	if attempt != 1 {
		t.Fatalf("attempt %d", attempt)
	}
	if j := job(t, s, "a"); j.State != Submitting || j.Attempts != 1 {
		t.Fatalf("after BeginSubmit %+v", j)
	}
	lastEvent(t, s, "a", Pending, Submitting, "attempt 1")
	if subs := submissions(t, s, "a"); len(subs) != 1 || subs[0].Attempt != 1 || subs[0].Fingerprint != "fp1" || subs[0].RequestID != "" || subs[0].Outcome != "" {
		t.Fatalf("submissions %+v", subs)
	}

	must(t, s.Submitted("a", "req-1"))
	if j := job(t, s, "a"); j.State != Queued || j.RequestID != "req-1" || j.SubmittedAt != fixedStamp {
		t.Fatalf("after Submitted %+v", j)
	}
	lastEvent(t, s, "a", Submitting, Queued, "request req-1")

	must(t, s.Observe("a", Running, "in_progress", nil))
	n := len(events(t, s, "a"))
	must(t, s.Observe("a", Running, "in_progress", nil))
	if got := len(events(t, s, "a")); got != n {
		t.Fatalf("a repeated poll wrote %d event(s)", got-n)
	}
	if j := job(t, s, "a"); j.State != Running || j.RemoteStatus != "in_progress" {
		t.Fatalf("after Observe %+v", j)
	}
	lastEvent(t, s, "a", Queued, Running, "remote status in_progress")

	outs := []string{"https://cdn/a/0.png", "https://cdn/a/1.png"}
	must(t, s.Completed("a", "succeeded", outs, ptr(0.75)))
	j = job(t, s, "a")
	if j.State != Completed || !reflect.DeepEqual(j.Outputs, outs) || j.CostUSD == nil || *j.CostUSD != 0.75 ||
		j.RemoteStatus != "succeeded" || j.FinishedAt != fixedStamp || j.QueuePosition != nil {
		t.Fatalf("after Completed %+v", j)
	}
	lastEvent(t, s, "a", Running, Completed, "2 output(s)")

	f0 := File{N: 0, URL: outs[0], Path: "a/0.png", Bytes: 10, SHA256: "aa"}
	f1 := File{N: 1, URL: outs[1], Path: "a/1.png", Bytes: 11, SHA256: "bb"}
	must(t, s.FileSaved("a", f1))
	must(t, s.FileSaved("a", f0))
	must(t, s.FileSaved("a", f0)) // saving again replaces, not duplicates
	if fs := files(t, s, "a"); !reflect.DeepEqual(fs, []File{f0, f1}) {
		t.Fatalf("files %+v", fs)
	}
	must(t, s.MarkDone("a"))
	if j := job(t, s, "a"); j.State != Done {
		t.Fatalf("after MarkDone %+v", j)
	}
	lastEvent(t, s, "a", Completed, Done, "")

	var want []Event
	for _, e := range [][3]string{
		{"", "pending", "added"},
		{"pending", "submitting", "attempt 1"},
		{"submitting", "queued", "request req-1"},
		{"queued", "running", "remote status in_progress"},
		{"running", "completed", "2 output(s)"},
		{"completed", "done", ""},
	} {
		want = append(want, Event{JobID: "a", At: fixedStamp, From: State(e[0]), To: State(e[1]), Detail: e[2]})
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
	must(t, s.EachOutput(func(o Output) error { outputs = append(outputs, o); return nil }))
	if len(outputs) != 2 || outputs[0].File != f0 || outputs[1].File != f1 || outputs[0].RequestID != "req-1" || outputs[0].Model != "model-a" {
		t.Fatalf("outputs %+v", outputs)
	}
	counts, err := s.Counts()
	must(t, err)
	if !reflect.DeepEqual(counts, map[State]int{Done: 1}) {
		t.Fatalf("counts %v", counts)
	}
}

func TestObserve(t *testing.T) {
	s := newStore(t)
	_, err := s.Sync([]Spec{spec("q", "fp"), spec("r", "fp")})
	must(t, err)
	toState(t, s, "q", Queued)
	toState(t, s, "r", Running)

	// Queue position is kept up to date without an event per poll.
	must(t, s.Observe("q", Queued, "in_queue", ptr(3)))
	lastEvent(t, s, "q", Queued, Queued, "remote status in_queue")
	n := len(events(t, s, "q"))
	must(t, s.Observe("q", Queued, "in_queue", ptr(2)))
	if j := job(t, s, "q"); j.QueuePosition == nil || *j.QueuePosition != 2 || j.State != Queued {
		t.Fatalf("after second poll %+v", j)
	}
	if len(events(t, s, "q")) != n {
		t.Fatal("a poll that changed only the queue position wrote an event")
	}
	// Running back to queued is allowed (queued ⇄ running).
	must(t, s.Observe("r", Queued, "in_queue", nil))
	lastEvent(t, s, "r", Running, Queued, "remote status in_queue")

	// An undocumented status keeps the state and is stored verbatim.
	for _, id := range []string{"q", "r"} {
		before := job(t, s, id)
		must(t, s.Observe(id, "", "Paused — by Operator ", nil))
		j := job(t, s, id)
		if j.State != before.State || j.RemoteStatus != "Paused — by Operator " {
			t.Fatalf("after unknown status %+v", j)
		}
		lastEvent(t, s, id, before.State, before.State, "remote status Paused — by Operator ")
		n := len(events(t, s, id))
		must(t, s.Observe(id, "", "Paused — by Operator ", nil))
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

func TestTransitionFromWrongStateConflicts(t *testing.T) {
	type call struct {
		name string
		do   func(s *Store, id string) error
	}
	calls := []call{
		{"BeginSubmit", func(s *Store, id string) error { _, err := s.BeginSubmit(id); return err }},
		{"Submitted", func(s *Store, id string) error { return s.Submitted(id, "req-x") }},
		{"SubmitFailed", func(s *Store, id string) error { return s.SubmitFailed(id, Failed, "bad input") }},
		{"ObserveRunning", func(s *Store, id string) error { return s.Observe(id, Running, "in_progress", nil) }},
		{"ObserveQueued", func(s *Store, id string) error { return s.Observe(id, Queued, "in_queue", ptr(1)) }},
		{"ObserveKeep", func(s *Store, id string) error { return s.Observe(id, "", "succeeded", ptr(1)) }},
		{"Completed", func(s *Store, id string) error { return s.Completed(id, "succeeded", []string{"u"}, ptr(9.0)) }},
		{"Failed", func(s *Store, id string) error { return s.Failed(id, "failed", "boom", ptr(9.0)) }},
		{"Cancelled", func(s *Store, id string) error { return s.Cancelled(id, "cancelled", "by user") }},
		{"SetOutputs", func(s *Store, id string) error { return s.SetOutputs(id, []string{"v"}) }},
		{"MarkDone", func(s *Store, id string) error { return s.MarkDone(id) }},
		{"Redownload", func(s *Store, id string) error { return s.Redownload(id, "missing") }},
		{"LastFileSaved", func(s *Store, id string) error {
			return s.LastFileSaved(id, File{N: 0, URL: "w", Path: id + "/9.png", Bytes: 9, SHA256: "ff"})
		}},
	}
	// allowed[state] lists the calls that state may legitimately take.
	allowed := map[State][]string{
		Pending:    {"BeginSubmit"},
		Submitting: {"Submitted", "SubmitFailed"},
		Queued:     {"ObserveRunning", "ObserveQueued", "ObserveKeep", "Completed", "Failed", "Cancelled"},
		Running:    {"ObserveRunning", "ObserveQueued", "ObserveKeep", "Completed", "Failed", "Cancelled"},
		Completed:  {"Failed", "Cancelled", "SetOutputs", "MarkDone", "LastFileSaved"},
		Done:       {"Redownload"},
		// Settled without output: only a new submission may follow.
		Failed:    {"BeginSubmit"},
		Cancelled: {"BeginSubmit"},
		Unknown:   {"BeginSubmit"},
	}
	if len(allowed) != len(States) {
		t.Fatalf("the table covers %d states of %d", len(allowed), len(States))
	}
	for _, st := range States {
		for _, c := range calls {
			if hasName(allowed[st], c.name) {
				// The positive control: the same call from a state that
				// allows it goes through, so a refusal below is the
				// state rule and not a broken call.
				t.Run(string(st)+"/"+c.name+"/allowed", func(t *testing.T) {
					s := newStore(t)
					_, err := s.Sync([]Spec{spec("a", "fp")})
					must(t, err)
					reachState(t, s, "a", st)
					if err := c.do(s, "a"); err != nil {
						t.Fatalf("%s from %s = %v, want it allowed", c.name, st, err)
					}
				})
				continue
			}
			t.Run(string(st)+"/"+c.name, func(t *testing.T) {
				s := newStore(t)
				_, err := s.Sync([]Spec{spec("a", "fp")})
				must(t, err)
				reachState(t, s, "a", st)
				before := recordOf(t, s, "a")
				if before.Job.State != st {
					t.Fatalf("set up %s, got %s", st, before.Job.State)
				}
				err = c.do(s, "a")
				if !errors.Is(err, ErrConflict) {
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
func reachState(t *testing.T, s *Store, id string, st State) {
	t.Helper()
	switch st {
	case Failed:
		toState(t, s, id, Queued)
		must(t, s.Failed(id, "failed", "CUDA out of memory", ptr(0.1)))
	case Cancelled:
		toState(t, s, id, Running)
		must(t, s.Cancelled(id, "cancelled", "cancelled at RunComfy"))
	case Unknown:
		toState(t, s, id, Submitting)
		n, err := s.Recover()
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
	if _, err := s.BeginSubmit("nope"); err == nil {
		t.Fatal("BeginSubmit of a job not in the ledger succeeded")
	}
	if err := s.Observe("nope", Running, "x", nil); err == nil {
		t.Fatal("Observe of a job not in the ledger succeeded")
	}
	if err := s.MarkDone("nope"); err == nil || !strings.Contains(err.Error(), "not in the ledger") {
		t.Fatalf("MarkDone of a job not in the ledger = %v", err)
	}
	if err := s.FileSaved("nope", File{Path: "x"}); err == nil {
		t.Fatal("FileSaved of a job not in the ledger succeeded")
	}
	if _, err := s.Job("nope"); err == nil {
		t.Fatal("Job of a job not in the ledger succeeded")
	}
}

func TestRecover(t *testing.T) {
	s := newStore(t)
	_, err := s.Sync([]Spec{spec("a", "fp"), spec("b", "fp"), spec("c", "fp"), spec("d", "fp")})
	must(t, err)
	toState(t, s, "a", Submitting)
	toState(t, s, "b", Submitting)
	toState(t, s, "c", Queued)
	before := recordOf(t, s, "c")

	n, err := s.Recover()
	must(t, err)
	if n != 2 {
		t.Fatalf("Recover = %d, want 2", n)
	}
	for _, id := range []string{"a", "b"} {
		if j := job(t, s, id); j.State != Unknown {
			t.Fatalf("%s after Recover: %+v", id, j)
		}
		lastEvent(t, s, id, Submitting, Unknown, "submission was cut off before its request id was saved; it may be running and billed")
		if subs := submissions(t, s, id); len(subs) != 1 || subs[0].Outcome != "unknown" || subs[0].RequestID != "" {
			t.Fatalf("%s submissions %+v", id, subs)
		}
	}
	if after := recordOf(t, s, "c"); !reflect.DeepEqual(before, after) {
		t.Fatal("Recover touched a queued job")
	}
	if j := job(t, s, "d"); j.State != Pending {
		t.Fatalf("Recover touched a pending job: %+v", j)
	}
	if n, err := s.Recover(); err != nil || n != 0 {
		t.Fatalf("second Recover = %d, %v", n, err)
	}
	// An unknown job may be resubmitted when the user says so.
	attempt, err := s.BeginSubmit("a")
	must(t, err)
	if attempt != 2 {
		t.Fatalf("attempt %d", attempt)
	}
}

func TestSubmitFailed(t *testing.T) {
	for _, to := range []State{Pending, Failed, Unknown} {
		t.Run(string(to), func(t *testing.T) {
			s := newStore(t)
			_, err := s.Sync([]Spec{spec("a", "fp")})
			must(t, err)
			toState(t, s, "a", Submitting)
			must(t, s.SubmitFailed("a", to, "HTTP 422: bad seed"))
			j := job(t, s, "a")
			if j.State != to || j.Error != "HTTP 422: bad seed" || j.RequestID != "" {
				t.Fatalf("after SubmitFailed %+v", j)
			}
			lastEvent(t, s, "a", Submitting, to, "HTTP 422: bad seed")
			if subs := submissions(t, s, "a"); len(subs) != 1 || subs[0].Outcome != string(to) {
				t.Fatalf("submissions %+v", subs)
			}
			// Each of these may be submitted again, as a new attempt.
			attempt, err := s.BeginSubmit("a")
			must(t, err)
			if j := job(t, s, "a"); attempt != 2 || j.Error != "" || j.State != Submitting {
				t.Fatalf("resubmission: attempt %d, %+v", attempt, j)
			}
			if subs := submissions(t, s, "a"); len(subs) != 2 || subs[1].Attempt != 2 || subs[1].Outcome != "" {
				t.Fatalf("submissions %+v", subs)
			}
		})
	}
}

func TestFailedAndCancelled(t *testing.T) {
	s := newStore(t)
	_, err := s.Sync([]Spec{spec("f", "fp"), spec("c", "fp")})
	must(t, err)
	toState(t, s, "f", Queued)
	toState(t, s, "c", Running)

	must(t, s.Failed("f", "failed", "CUDA out of memory", ptr(0.1)))
	j := job(t, s, "f")
	if j.State != Failed || j.Error != "CUDA out of memory" || j.RemoteStatus != "failed" || j.CostUSD == nil || *j.CostUSD != 0.1 || j.FinishedAt != fixedStamp {
		t.Fatalf("after Failed %+v", j)
	}
	lastEvent(t, s, "f", Queued, Failed, "CUDA out of memory")

	must(t, s.Cancelled("c", "cancelled", "cancelled by user"))
	j = job(t, s, "c")
	if j.State != Cancelled || j.Error != "cancelled by user" || j.CostUSD != nil {
		t.Fatalf("after Cancelled %+v", j)
	}
	lastEvent(t, s, "c", Running, Cancelled, "cancelled by user")
	if subs := submissions(t, s, "c"); len(subs) != 1 || subs[0].Outcome != "cancelled" {
		t.Fatalf("submissions %+v", subs)
	}

	// A failed job retried: the job's own cost is reset, the history keeps it.
	toState(t, s, "f", Completed)
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
// the completed result cost.
func TestFailedAfterCompletedKeepsCost(t *testing.T) {
	s := newStore(t)
	_, err := s.Sync([]Spec{spec("a", "fp")})
	must(t, err)
	toState(t, s, "a", Completed) // cost 0.25
	must(t, s.Failed("a", "succeeded", "output URL expired and could not be refreshed", nil))
	j := job(t, s, "a")
	if j.State != Failed || j.CostUSD == nil || *j.CostUSD != 0.25 {
		t.Fatalf("after Failed %+v", j)
	}
	if v := spent(t, s); v != 0.25 {
		t.Fatalf("spent %v, want 0.25: a paid result was forgotten", v)
	}
	lastEvent(t, s, "a", Completed, Failed, "output URL expired and could not be refreshed")
}

func TestRedownloadAndSetOutputs(t *testing.T) {
	s := newStore(t)
	_, err := s.Sync([]Spec{spec("a", "fp")})
	must(t, err)
	toState(t, s, "a", Done)
	before := job(t, s, "a")

	must(t, s.Redownload("a", "a/0.png is missing on disk"))
	j := job(t, s, "a")
	if j.State != Completed || !reflect.DeepEqual(j.Outputs, before.Outputs) || j.RequestID != before.RequestID || j.Attempts != 1 {
		t.Fatalf("after Redownload %+v", j)
	}
	lastEvent(t, s, "a", Done, Completed, "a/0.png is missing on disk")

	fresh := []string{"https://cdn/a/0.png?sig=new"}
	must(t, s.SetOutputs("a", fresh))
	if j := job(t, s, "a"); j.State != Completed || !reflect.DeepEqual(j.Outputs, fresh) {
		t.Fatalf("after SetOutputs %+v", j)
	}
	lastEvent(t, s, "a", Completed, Completed, "output URLs refreshed")

	must(t, s.FileSaved("a", File{N: 0, URL: fresh[0], Path: "a/0.png", Bytes: 5, SHA256: "new"}))
	must(t, s.MarkDone("a"))
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
	_, err := s.Sync(specs)
	must(t, err)
	toState(t, s, "d", Running)
	toState(t, s, "b", Done)

	var order []string
	must(t, s.EachJob(func(j Job) error { order = append(order, j.ID); return nil }))
	if !reflect.DeepEqual(order, ids) {
		t.Fatalf("EachJob order %v, want the order added %v", order, ids)
	}
	order = nil
	must(t, s.EachJob(func(j Job) error { order = append(order, j.ID+":"+string(j.State)); return nil }, Running, Done))
	if !reflect.DeepEqual(order, []string{"d:running", "b:done"}) {
		t.Fatalf("EachJob(running, done) %v", order)
	}
	states := map[string]State{}
	must(t, s.EachJobState(func(id string, st State) error { states[id] = st; return nil }))
	if len(states) != 5 || states["d"] != Running || states["a"] != Pending {
		t.Fatalf("EachJobState %v", states)
	}
	var fileJobs []string
	must(t, s.EachFile(func(id string, f File) error { fileJobs = append(fileJobs, id+"/"+f.Path); return nil }))
	if !reflect.DeepEqual(fileJobs, []string{"b/b/0.png"}) {
		t.Fatalf("EachFile %v", fileJobs)
	}
	stop := errors.New("stop")
	if err := s.EachJob(func(Job) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("EachJob did not pass the callback's error back: %v", err)
	}
	counts, err := s.Counts()
	must(t, err)
	if !reflect.DeepEqual(counts, map[State]int{Pending: 3, Running: 1, Done: 1}) {
		t.Fatalf("counts %v", counts)
	}
	for _, st := range States {
		if st.InFlight() != (st == Queued || st == Running) {
			t.Fatalf("%s.InFlight() = %v", st, st.InFlight())
		}
		if st.Settled() != (st == Done || st == Failed || st == Cancelled || st == Unknown) {
			t.Fatalf("%s.Settled() = %v", st, st.Settled())
		}
	}
}
