package runner

import (
	"context"
	"path/filepath"
	"testing"

	"comfybatch/lifecycle"
	"comfybatch/runcomfy/runcomfytest"
	"comfybatch/store"
)

// An input edited and changed back around a run that submits nothing (a
// Ctrl-C at once, a cap, an account error: Sync has run) takes up its
// earlier submission's state again: an unknown job stays unknown, a failed
// one failed, a done one done; none is submitted again without its flag.
// (Found in review: the unknown job was POSTed again.)
func TestInputChangedBackTakesUpItsSubmission(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  runcomfytest.Config
		want lifecycle.State
	}{
		{"unknown", runcomfytest.Config{Answers: runcomfytest.Answers{SubmitCreated5xx: 1}}, lifecycle.Unknown},
		{"failed", runcomfytest.Config{FailedStatusRate: 1}, lifecycle.Failed},
		{"done", runcomfytest.Config{}, lifecycle.Done},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.cfg)
			x, y := manifestOf(t, 1, "x"), manifestOf(t, 1, "y")
			e.run(x, nil)
			if st := e.jobs()["job-000"].State; st != tt.want {
				t.Fatalf("setup: job %s, want %s", st, tt.want)
			}
			first := e.jobs()["job-000"].RequestID
			st, err := store.Open(e.ledger, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			stopped, cancel := context.WithCancel(context.Background())
			cancel()
			Run(stopped, context.Background(), Config{Manifest: y, Store: st, API: e.client, HTTP: e.client.HTTPClient(),
				OutDir: filepath.Join(e.dir, "out"), ProgressEvery: -1})
			st.Close()
			if st := e.jobs()["job-000"].State; st != lifecycle.Pending {
				t.Fatalf("after the edit: %s, want pending", st)
			}
			created := e.srv.Stats().Created
			e.run(x, nil)
			j := e.jobs()["job-000"]
			if e.srv.Stats().Created != created || e.srv.Duplicates() != 0 {
				t.Fatalf("changing back created %d job(s) (job now %s)", e.srv.Stats().Created-created, j.State)
			}
			if j.State != tt.want || j.RequestID != first {
				t.Fatalf("job %s with request %q, want %s with %q", j.State, j.RequestID, tt.want, first)
			}
		})
	}
}
