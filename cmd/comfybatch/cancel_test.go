package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"comfybatch/lifecycle"
	"comfybatch/runcomfy"
	"comfybatch/runcomfy/runcomfytest"
	"comfybatch/store"
)

// TestCancel submits four jobs and cancels two by name while all are
// queued at RunComfy; then, once the fake's clock has moved the other two
// into running, cancels every job the ledger still has queued: RunComfy
// answers not_cancellable, and the ledger records both kinds of answer.
func TestCancel(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	ahead := time.Duration(0)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return time.Now().Add(ahead)
	}
	srv, env := fakeAPI(t, runcomfytest.Config{QueueTime: time.Hour, RunTime: 10 * time.Hour, Now: clock})
	manifest, _ := writeManifest(t, t.TempDir(), 4)
	if r := runMain(t, env, "run", manifest, "--submit-only"); r.code != 0 {
		t.Fatalf("submit: exit %d:\n%s", r.code, r.stderr)
	}

	r := runMain(t, env, "cancel", manifest, "--job", "clip-0001", "--job", "clip-0002")
	if r.code != 0 || strings.Count(r.stdout, " cancelled ") != 2 {
		t.Fatalf("cancel --job: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}

	mu.Lock()
	ahead = 2 * time.Hour // the two left are running at RunComfy now
	mu.Unlock()
	r = runMain(t, env, "cancel", manifest, "--json")
	if r.code != 0 {
		t.Fatalf("cancel exited %d:\n%s", r.code, r.stderr)
	}
	var out cancelJSON
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	if out.Counts["not_cancellable"] != 2 || len(out.Jobs) != 2 {
		t.Fatalf("cancel answered %+v", out)
	}
	if j := out.Jobs[0]; j.ID != "clip-0000" || j.RemoteStatus != "in_progress" || j.State != "queued" || !strings.Contains(j.Detail, "billed") {
		t.Fatalf("a running job: %+v", j)
	}
	if n := srv.Stats().Cancel; n != 4 {
		t.Fatalf("%d cancel calls, want 4", n)
	}

	s := status(t, manifest)
	if s.Counts["cancelled"] != 2 || s.Counts["queued"] != 2 {
		t.Fatalf("ledger after cancel: %v", s.Counts)
	}
	for _, j := range s.Jobs {
		last := j.Events[len(j.Events)-1]
		switch j.ID {
		case "clip-0001", "clip-0002":
			if last.To != "cancelled" || !strings.Contains(last.Detail, "comfybatch cancel") {
				t.Errorf("%s: cancel not in the history: %+v", j.ID, last)
			}
		default:
			if last.To != "queued" || !strings.Contains(last.Detail, "cancel refused: not_cancellable") {
				t.Errorf("%s: refusal not in the history: %+v", j.ID, last)
			}
		}
	}

	// Naming a job no longer at RunComfy: skipped, not sent.
	r = runMain(t, env, "cancel", manifest, "--job", "clip-0001")
	if r.code != 0 || !strings.Contains(r.stdout, "skipped") || srv.Stats().Cancel != 4 {
		t.Fatalf("cancel --job of a cancelled job: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	// An unknown id cancels nothing: exit 2.
	r = runMain(t, env, "cancel", manifest, "--job", "clip-0000", "--job", "nope")
	if r.code != 2 || !strings.Contains(r.stderr, "job nope is not in the ledger") || srv.Stats().Cancel != 4 {
		t.Fatalf("cancel --job nope: exit %d:\n%s", r.code, r.stderr)
	}
}

// TestCancelBesideRun: cancel writes to the ledger, so it refuses to run
// while another comfybatch holds it (exit 3) and says what to do.
func TestCancelBesideRun(t *testing.T) {
	t.Parallel()
	srv, env := fakeAPI(t, runcomfytest.Config{QueueTime: time.Hour})
	manifest, _ := writeManifest(t, t.TempDir(), 2)
	if r := runMain(t, env, "run", manifest, "--submit-only"); r.code != 0 {
		t.Fatalf("submit: exit %d:\n%s", r.code, r.stderr)
	}
	held, err := store.Open(filepath.Join(filepath.Dir(manifest), "jobs.ledger.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	r := runMain(t, env, "cancel", manifest)
	if r.code != 3 || !strings.Contains(r.stderr, "cannot run beside `comfybatch run`") || !strings.Contains(r.stderr, "stop the run") {
		t.Fatalf("exit %d, want 3 with advice:\n%s", r.code, r.stderr)
	}
	if srv.Stats().Cancel != 0 {
		t.Fatal("cancel called the API while the ledger was held")
	}
}

func TestCancelNeedsTokenAndLedger(t *testing.T) {
	t.Parallel()
	manifest, _ := writeManifest(t, t.TempDir(), 1)
	// No ledger: nothing was submitted, nothing to cancel, and none created.
	r := runMain(t, nil, "cancel", manifest)
	if r.code != 0 || !strings.Contains(r.stderr, "nothing to cancel") {
		t.Fatalf("no ledger: exit %d:\n%s", r.code, r.stderr)
	}
	if s := runMain(t, nil, "status", manifest); !strings.Contains(s.stderr, "no ledger") {
		t.Fatal("cancel created a ledger")
	}
	_, env := fakeAPI(t, runcomfytest.Config{QueueTime: time.Hour})
	if r := runMain(t, env, "run", manifest, "--submit-only"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	r = runMain(t, map[string]string{"RUNCOMFY_API_BASE": env["RUNCOMFY_API_BASE"]}, "cancel", manifest)
	if r.code != 2 || !strings.Contains(r.stderr, "RUNCOMFY_TOKEN") {
		t.Fatalf("no token: exit %d:\n%s", r.code, r.stderr)
	}
}

// TestCancelAskedNotDone: an answer "cancelled" whose status says the job is
// still queued leaves it queued in the ledger, to be polled; marking it
// cancelled would let --retry-failed pay for a job that may still run.
func TestCancelAskedNotDone(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status string
		want   lifecycle.State
	}{
		{"in_queue", lifecycle.Queued},
		{"cancelled", lifecycle.Cancelled},
		{"", lifecycle.Cancelled},
	} {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"request_id": "req-1", "outcome": "cancelled", "status": %q}`, tc.status)
		}))
		api, err := runcomfy.New(runcomfy.Options{BaseURL: ts.URL, Token: "cancel-test-token"})
		if err != nil {
			t.Fatal(err)
		}
		st, err := store.Open(filepath.Join(t.TempDir(), "l.db"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = st.Sync(context.Background(), []store.Spec{{ID: "a", Model: "m", Input: json.RawMessage(`{}`), Fingerprint: "f"}})
		if err == nil {
			_, err = beginSubmit(st, "a")
		}
		if err == nil {
			err = submitted(st, "a", "req-1")
		}
		if err != nil {
			t.Fatal(err)
		}
		j, err := st.Job(context.Background(), "a")
		if err != nil {
			t.Fatal(err)
		}
		var res cancelJobJSON
		if err := cancelOne(context.Background(), api, st, j, &res); err != nil {
			t.Fatal(err)
		}
		if j, _ = st.Job(context.Background(), "a"); j.State != tc.want {
			t.Errorf("status %q: job %s, want %s (%s)", tc.status, j.State, tc.want, res.Detail)
		}
		st.Close()
		ts.Close()
	}
}
