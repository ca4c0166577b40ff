package store

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"comfybatch/lifecycle"
)

// stepTo is a Step to `to` carrying everything such a Step may carry, so
// that a refusal is the edge rule and never a missing payload.
func stepTo(from, to lifecycle.State) lifecycle.Step {
	st := lifecycle.Step{To: to, Detail: fmt.Sprintf("test: %s → %s", from, to)}
	switch to {
	case lifecycle.Queued:
		st.RequestID, st.Remote, st.QueuePosition = "req-1", "in_queue", ptr(4)
	case lifecycle.Running:
		st.Remote = "in_progress"
	case lifecycle.Completed:
		st.Remote, st.Outputs, st.Cost = "succeeded", []string{"https://x/0.png", "https://x/1.png"}, ptr(0.5)
	case lifecycle.Failed, lifecycle.Cancelled:
		st.Remote, st.Error, st.Cost = string(to), "test: "+string(to), ptr(0.125)
	case lifecycle.Pending, lifecycle.Unknown:
		st.Error = "test: " + string(to)
	}
	return st
}

// pathTo is a shortest legal path of states from pending to st along
// lifecycle.Edges (st itself last; empty for pending).
func pathTo(t testing.TB, st lifecycle.State) []lifecycle.State {
	t.Helper()
	prev := map[lifecycle.State]lifecycle.State{lifecycle.Pending: ""}
	queue := []lifecycle.State{lifecycle.Pending}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, e := range lifecycle.Edges {
			if _, seen := prev[e.To]; e.From == cur && !seen && !e.BySync {
				prev[e.To] = cur
				queue = append(queue, e.To)
			}
		}
	}
	if _, ok := prev[st]; !ok {
		t.Fatalf("%s cannot be reached from pending along lifecycle.Edges", st)
	}
	var path []lifecycle.State
	for x := st; x != lifecycle.Pending; x = prev[x] {
		path = append([]lifecycle.State{x}, path...)
	}
	return path
}

// TestApplyRefusesEveryTransitionNotAnEdge tries every pair of states: a job
// brought to `from` by Steps along a legal path, then a Step to `to`. It
// succeeds exactly when lifecycle.Allowed(from, to); otherwise Apply fails
// with ErrConflict, says which job and which state it was asked for, and
// leaves the job, its history, its submissions, its files and the ledger's
// spending as they were (the file passed along is not saved either).
func TestApplyRefusesEveryTransitionNotAnEdge(t *testing.T) {
	const id = "job-7"
	allowed := 0
	for _, from := range lifecycle.States {
		for _, to := range lifecycle.States {
			if applyable(from, to) {
				allowed++
			}
			t.Run(string(from)+"→"+string(to), func(t *testing.T) {
				s := newStore(t)
				_, err := s.Sync(t.Context(), []Spec{spec(id, "fp")})
				must(t, err)
				cur := lifecycle.Pending
				for _, next := range pathTo(t, from) {
					var fs []File
					if next == lifecycle.Done {
						fs = []File{{N: 0, URL: "https://x/0.png", Path: id + "/0.png", Bytes: 3, SHA256: "abc"}}
					}
					must(t, s.Apply(t.Context(), id, stepTo(cur, next), fs...))
					cur = next
				}
				before := recordOf(t, s, id)
				if before.Job.State != from {
					t.Fatalf("set up %s, got %s", from, before.Job.State)
				}

				step := stepTo(from, to)
				f := File{N: 1, URL: "https://x/1.png", Path: id + "/1.png", Bytes: 5, SHA256: "def"}
				err = s.Apply(t.Context(), id, step, f)
				if applyable(from, to) {
					if err != nil {
						t.Fatalf("Apply %s → %s = %v, want it allowed", from, to, err)
					}
					if got := job(t, s, id).State; got != to {
						t.Fatalf("Apply %s → %s left the job %s", from, to, got)
					}
					lastEvent(t, s, id, from, to, step.Detail)
					return
				}
				if !errors.Is(err, ErrConflict) {
					t.Fatalf("Apply %s → %s = %v, want ErrConflict", from, to, err)
				}
				if msg := err.Error(); !strings.Contains(msg, id) || !strings.Contains(msg, string(to)) {
					t.Fatalf("Apply %s → %s: error %q does not name the job %s and the state %s", from, to, msg, id, to)
				}
				if after := recordOf(t, s, id); !reflect.DeepEqual(before, after) {
					t.Fatalf("refused %s → %s changed the ledger:\nbefore %+v\nafter  %+v", from, to, before, after)
				}
			})
		}
	}
	// The diagram is not empty, nor everything: both outcomes were tried.
	if n := len(lifecycle.States) * len(lifecycle.States); allowed == 0 || allowed == n {
		t.Fatalf("%d of %d pairs allowed", allowed, n)
	}
}

// TestApplyNamesTheJob: a Step for a job the ledger does not have fails,
// saying which job and which state, and is not taken for a conflict.
func TestApplyNamesTheJob(t *testing.T) {
	s := newStore(t)
	_, err := s.Sync(t.Context(), []Spec{spec("a", "fp")})
	must(t, err)
	err = s.Apply(t.Context(), "nope-3", lifecycle.Step{To: lifecycle.Submitting})
	if err == nil {
		t.Fatal("Apply to a job not in the ledger succeeded")
	}
	if errors.Is(err, ErrConflict) {
		t.Fatalf("Apply to a job not in the ledger = %v, a conflict", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "nope-3") || !strings.Contains(msg, string(lifecycle.Submitting)) || !strings.Contains(msg, "not in the ledger") {
		t.Fatalf("error %q does not name the job, the state and the reason", msg)
	}
	if subs := submissions(t, s, "nope-3"); len(subs) != 0 {
		t.Fatalf("submissions of a job not in the ledger %+v", subs)
	}
}

// applyable is what Apply takes: an edge of the table that is not taken
// only by a sync with the manifest.
func applyable(from, to lifecycle.State) bool {
	return lifecycle.Allowed(from, to) && !lifecycle.BySync(from, to)
}
