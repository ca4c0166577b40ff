package store

import (
	"math"
	"reflect"
	"strings"
	"testing"

	"comfybatch/lifecycle"
)

func TestClassify(t *testing.T) {
	known := map[string]Known{"a": {State: lifecycle.Done, Fingerprint: "1"}}
	for _, c := range []struct {
		sp   Spec
		want lifecycle.Change
	}{
		{spec("a", "1"), lifecycle.Unchanged},
		{spec("a", "2"), lifecycle.Changed},
		{spec("b", "1"), lifecycle.New},
	} {
		if got := Classify(c.sp, known); got != c.want {
			t.Fatalf("Classify(%s, %s) = %s, want %s", c.sp.ID, c.sp.Fingerprint, got, c.want)
		}
	}
}

func TestSyncAddsAndIsIdempotent(t *testing.T) {
	s := newStore(t)
	specs := []Spec{spec("a", "1"), spec("b", "1")}
	rep, err := s.Sync(t.Context(), specs)
	must(t, err)
	if rep.New != 2 || rep.Changed != 0 || rep.Unchanged != 0 || len(rep.ChangedIDs) != 0 {
		t.Fatalf("first Sync %+v", rep)
	}
	before := map[string]record{"a": recordOf(t, s, "a"), "b": recordOf(t, s, "b")}
	rep, err = s.Sync(t.Context(), append(specs, spec("c", "1")))
	must(t, err)
	if rep.New != 1 || rep.Unchanged != 2 || rep.Changed != 0 {
		t.Fatalf("second Sync %+v", rep)
	}
	for id, r := range before {
		if after := recordOf(t, s, id); !reflect.DeepEqual(r.Job, after.Job) || !reflect.DeepEqual(r.Events, after.Events) {
			t.Fatalf("unchanged job %s was touched", id)
		}
	}
	lastEvent(t, s, "c", "", lifecycle.Pending, "added")
	known, err := s.Known(t.Context())
	must(t, err)
	if len(known) != 3 || !reflect.DeepEqual(known["c"], Known{State: lifecycle.Pending, Fingerprint: "1"}) {
		t.Fatalf("Known %v", known)
	}
}

func TestSyncChangedInput(t *testing.T) {
	s := newStore(t)
	_, err := s.Sync(t.Context(), []Spec{spec("done", "old"), spec("flying", "old"), spec("same", "old"), spec("gone", "old")})
	must(t, err)
	toState(t, s, "done", lifecycle.Done)
	toState(t, s, "flying", lifecycle.Queued)
	toState(t, s, "same", lifecycle.Completed)
	toState(t, s, "gone", lifecycle.Running)
	same, gone, flying := recordOf(t, s, "same"), recordOf(t, s, "gone"), recordOf(t, s, "flying")
	spentBefore := spent(t, s)

	rep, err := s.Sync(t.Context(), []Spec{spec("done", "new"), spec("flying", "new"), spec("same", "old")})
	must(t, err)
	if rep.New != 0 || rep.Changed != 1 || rep.Deferred != 1 || rep.Unchanged != 1 || !reflect.DeepEqual(rep.ChangedIDs, []string{"done"}) {
		t.Fatalf("Sync report %+v", rep)
	}
	// The job in flight keeps its paid-for request, to be collected first.
	if after := recordOf(t, s, "flying"); !reflect.DeepEqual(flying, after) {
		t.Fatalf("a changed job in flight was reset:\nbefore %+v\nafter  %+v", flying, after)
	}
	toState(t, s, "flying", lifecycle.Done)
	spentBefore = spent(t, s) // flying's cost, now reported
	rep, err = s.Sync(t.Context(), []Spec{spec("done", "new"), spec("flying", "new"), spec("same", "old")})
	must(t, err)
	if rep.Changed != 1 || rep.Deferred != 0 || !reflect.DeepEqual(rep.ChangedIDs, []string{"flying"}) {
		t.Fatalf("Sync report once collected %+v", rep)
	}
	for _, c := range []struct {
		id   string
		from lifecycle.State
	}{{"done", lifecycle.Done}, {"flying", lifecycle.Done}} {
		j := job(t, s, c.id)
		if j.State != lifecycle.Pending || j.Fingerprint != "new" || string(j.Input) != string(spec(c.id, "new").Input) ||
			j.RequestID != "" || j.CostUSD != nil || len(j.Outputs) != 0 || j.RemoteStatus != "" || j.SubmittedAt != "" || j.FinishedAt != "" {
			t.Fatalf("changed job %s: %+v", c.id, j)
		}
		if fs := files(t, s, c.id); len(fs) != 0 {
			t.Fatalf("changed job %s kept files %+v", c.id, fs)
		}
		evs := events(t, s, c.id)
		e := evs[len(evs)-1]
		if e.From != c.from || e.To != lifecycle.Pending || !strings.Contains(e.Detail, "input changed") || !strings.Contains(e.Detail, "old") || !strings.Contains(e.Detail, "new") {
			t.Fatalf("changed job %s: last event %+v", c.id, e)
		}
		// The paid-for submission is still on record.
		subs := submissions(t, s, c.id)
		if len(subs) != 1 || subs[0].RequestID != "req-"+c.id || subs[0].Fingerprint != "old" {
			t.Fatalf("changed job %s lost its submission: %+v", c.id, subs)
		}
	}
	if subs := submissions(t, s, "done"); subs[0].CostUSD == nil || *subs[0].CostUSD != 0.25 {
		t.Fatalf("done's old cost lost: %+v", subs)
	}
	if after := recordOf(t, s, "same"); !reflect.DeepEqual(same.Job, after.Job) || !reflect.DeepEqual(same.Events, after.Events) || !reflect.DeepEqual(same.Files, after.Files) {
		t.Fatalf("unchanged job touched:\nbefore %+v\nafter  %+v", same, after)
	}
	if after := recordOf(t, s, "gone"); !reflect.DeepEqual(gone.Job, after.Job) || !reflect.DeepEqual(gone.Events, after.Events) {
		t.Fatal("a job absent from the manifest was touched")
	}
	if v := spent(t, s); v != spentBefore {
		t.Fatalf("spent %v, was %v", v, spentBefore)
	}

	// The new input runs as a new attempt; both costs count.
	toState(t, s, "done", lifecycle.Done)
	subs := submissions(t, s, "done")
	if len(subs) != 2 || subs[1].Attempt != 2 || subs[1].Fingerprint != "new" || subs[0].Fingerprint != "old" {
		t.Fatalf("submissions %+v", subs)
	}
	if v := spent(t, s); math.Abs(v-(spentBefore+0.25)) > 1e-9 {
		t.Fatalf("spent %v, want %v", v, spentBefore+0.25)
	}
	if j := job(t, s, "done"); j.RequestID != "req-done-2" || *j.CostUSD != 0.25 {
		t.Fatalf("resubmitted job %+v", j)
	}
}

// TestSyncChangedWhileSubmittingKeepsHistory: a job caught mid-POST is not
// replaced by a changed input (lifecycle.State.Replaceable): its POST may
// have created a billed job. A run first recovers it to unknown; the Sync
// after that replaces it, and attempts keep counting so no submission is
// overwritten.
func TestSyncChangedWhileSubmittingKeepsHistory(t *testing.T) {
	s := newStore(t)
	_, err := s.Sync(t.Context(), []Spec{spec("a", "old")})
	must(t, err)
	toState(t, s, "a", lifecycle.Submitting)
	before := recordOf(t, s, "a")
	rep, err := s.Sync(t.Context(), []Spec{spec("a", "new")})
	must(t, err)
	if rep.Deferred != 1 || rep.Changed != 0 || len(rep.ChangedIDs) != 0 {
		t.Fatalf("Sync of a submitting job %+v, want it deferred", rep)
	}
	if after := recordOf(t, s, "a"); !reflect.DeepEqual(before, after) {
		t.Fatalf("Sync touched a submitting job:\nbefore %+v\nafter  %+v", before, after)
	}
	n, err := s.Recover(t.Context())
	must(t, err)
	if n != 1 {
		t.Fatalf("Recover = %d, want 1", n)
	}
	rep, err = s.Sync(t.Context(), []Spec{spec("a", "new")})
	must(t, err)
	if rep.Changed != 1 || rep.Deferred != 0 {
		t.Fatalf("Sync once recovered %+v", rep)
	}
	if j := job(t, s, "a"); j.State != lifecycle.Pending || j.Attempts != 1 || j.Fingerprint != "new" {
		t.Fatalf("%+v", j)
	}
	must(t, beginSubmit(t, s, "a"))
	if j := job(t, s, "a"); j.Attempts != 2 {
		t.Fatalf("attempt %d: attempts must keep counting so no submission is overwritten", j.Attempts)
	}
	if subs := submissions(t, s, "a"); len(subs) != 2 || subs[0].Fingerprint != "old" || subs[0].Outcome != "unknown" || subs[1].Fingerprint != "new" {
		t.Fatalf("submissions %+v", subs)
	}
}

func TestSyncIsAllOrNothing(t *testing.T) {
	s := newStore(t)
	_, err := s.Sync(t.Context(), []Spec{spec("a", "1")})
	must(t, err)
	// A duplicate id fails the insert; nothing of the Sync may remain.
	if _, err := s.Sync(t.Context(), []Spec{spec("b", "1"), spec("a", "2"), spec("c", "1"), spec("c", "1")}); err == nil {
		t.Fatal("Sync with a duplicate id succeeded")
	}
	known, err := s.Known(t.Context())
	must(t, err)
	if len(known) != 1 || known["a"].Fingerprint != "1" {
		t.Fatalf("a failed Sync left %v", known)
	}
}

// TestSyncMergesInterleavedIDs checks the merge of manifest and ledger by id:
// ids on either side only, before, between and after the other's, with new
// jobs added in manifest order whatever their ids.
func TestSyncMergesInterleavedIDs(t *testing.T) {
	s := newStore(t)
	_, err := s.Sync(t.Context(), []Spec{spec("b", "1"), spec("d", "1"), spec("f", "1")})
	must(t, err)
	rep, err := s.Sync(t.Context(), []Spec{spec("g", "1"), spec("a", "1"), spec("d", "2"), spec("c", "1"), spec("b", "1"), spec("e", "1")})
	must(t, err)
	if rep.New != 4 || rep.Changed != 1 || rep.Unchanged != 1 || !reflect.DeepEqual(rep.ChangedIDs, []string{"d"}) {
		t.Fatalf("Sync %+v, want 4 new (g a c e), d changed, b unchanged", rep)
	}
	var order []string
	must(t, s.EachJobState(t.Context(), func(id string, _ lifecycle.State) error { order = append(order, id); return nil }))
	if want := []string{"b", "d", "f", "g", "a", "c", "e"}; !reflect.DeepEqual(order, want) {
		t.Errorf("ledger order %v, want %v", order, want)
	}
	seq := func(yield func(Spec) bool) {
		for _, id := range []string{"x", "w"} {
			if !yield(spec(id, "1")) {
				return
			}
		}
	}
	if _, err := s.SyncSorted(t.Context(), seq); err == nil || !strings.Contains(err.Error(), "out of order") {
		t.Errorf("SyncSorted out of order: %v", err)
	}
	if _, err := s.Sync(t.Context(), []Spec{spec("z", "1"), spec("z", "2")}); err == nil {
		t.Error("Sync took one id twice")
	}
	if _, err := s.Job(t.Context(), "x"); err == nil {
		t.Error("a refused SyncSorted wrote to the ledger")
	}
}
