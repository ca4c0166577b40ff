package store

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"comfybatch/lifecycle"
)

// The test binary doubles as a helper process: with STORE_LOCK_HELPER set it
// opens the ledger named by STORE_LEDGER and never returns on its own, so that
// a test can kill it with SIGKILL and see what the kernel and the disk kept.
func TestMain(m *testing.M) {
	switch mode := os.Getenv("STORE_LOCK_HELPER"); mode {
	case "":
		os.Exit(m.Run())
	default:
		runHelper(mode, os.Getenv("STORE_LEDGER"))
	}
}

func runHelper(mode, path string) {
	s, err := Open(path, Options{})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(out, format+"\n", args...)
		out.Flush()
		mu.Unlock()
	}
	switch mode {
	case "hold":
		say("locked")
	case "write":
		// Eight workers add jobs one write at a time and report each id only
		// after its write was acknowledged.
		say("locked")
		for w := 0; w < 8; w++ {
			go func() {
				for i := 0; ; i++ {
					id := fmt.Sprintf("w%d-%06d", w, i)
					if _, err := s.Sync(context.Background(), []Spec{spec(id, "fp")}); err != nil {
						say("error %v", err)
						return
					}
					say("ack %s", id)
				}
			}()
		}
	}
	time.Sleep(time.Hour)
	os.Exit(0)
}

// fixedNow is the clock of every test store: event times are then exact.
var fixedNow = time.Date(2025, 1, 2, 3, 4, 5, 6_000_000, time.FixedZone("X", 3600))

const fixedStamp = "2025-01-02T02:04:05.006Z"

func ledgerPath(t testing.TB) string {
	return filepath.Join(t.TempDir(), "ledger.db")
}

func openAt(t testing.TB, path string, opts Options) *Store {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return fixedNow }
	}
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%s, %+v): %v", path, opts, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newStore(t testing.TB) *Store {
	t.Helper()
	return openAt(t, ledgerPath(t), Options{})
}

func spec(id, fp string) Spec {
	in, _ := json.Marshal(map[string]string{"id": id, "fp": fp})
	return Spec{ID: id, Model: "model-" + id, Input: in, Fingerprint: fp}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func job(t testing.TB, s *Store, id string) Job {
	t.Helper()
	j, err := s.Job(t.Context(), id)
	if err != nil {
		t.Fatalf("Job(%s): %v", id, err)
	}
	return j
}

func events(t testing.TB, s *Store, id string) []Event {
	t.Helper()
	evs, err := s.Events(t.Context(), id)
	if err != nil {
		t.Fatalf("Events(%s): %v", id, err)
	}
	return evs
}

func submissions(t testing.TB, s *Store, id string) []Submission {
	t.Helper()
	subs, err := s.Submissions(t.Context(), id)
	if err != nil {
		t.Fatalf("Submissions(%s): %v", id, err)
	}
	return subs
}

func files(t testing.TB, s *Store, id string) []File {
	t.Helper()
	fs, err := s.Files(t.Context(), id)
	if err != nil {
		t.Fatalf("Files(%s): %v", id, err)
	}
	return fs
}

func spent(t testing.TB, s *Store) float64 {
	t.Helper()
	v, err := s.Spent(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// lastEvent checks the newest event of a job.
func lastEvent(t testing.TB, s *Store, id string, from, to lifecycle.State, detail string) {
	t.Helper()
	evs := events(t, s, id)
	if len(evs) == 0 {
		t.Fatalf("job %s: no events", id)
	}
	e := evs[len(evs)-1]
	if e.From != from || e.To != to || e.Detail != detail || e.JobID != id {
		t.Fatalf("job %s: last event %+v, want %s → %s %q", id, e, from, to, detail)
	}
	if e.At != fixedStamp {
		t.Fatalf("job %s: event at %q, want %q", id, e.At, fixedStamp)
	}
}

func ptr[T any](v T) *T { return &v }

// snapshot records every file and directory under root with the sha256 of
// each file's bytes, to prove that nothing was modified or created.
func snapshot(t testing.TB, root string) map[string]string {
	t.Helper()
	m := make(map[string]string)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			m[rel] = "dir"
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		m[rel] = hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func sameSnapshot(t testing.TB, before, after map[string]string) {
	t.Helper()
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("files changed:\nbefore %v\nafter  %v", before, after)
	}
}

// The transitions a run makes, as the Steps it applies (lifecycle decides
// them; these build the same Steps). Each returns Apply's error.

// beginSubmit: the POST is about to leave.
func beginSubmit(t testing.TB, s *Store, id string) error {
	return s.Apply(t.Context(), id, lifecycle.Step{To: lifecycle.Submitting})
}

// submitted: RunComfy answered with a request id. The detail is the one
// lifecycle.Submit gives such an answer.
func submitted(t testing.TB, s *Store, id, req string) error {
	return s.Apply(t.Context(), id, lifecycle.Step{To: lifecycle.Queued, RequestID: req, Detail: "request " + req})
}

// submitFailed: a submission without a request id ends in to.
func submitFailed(t testing.TB, s *Store, id string, to lifecycle.State, msg string) error {
	return s.Apply(t.Context(), id, lifecycle.Step{To: to, Error: msg, Detail: msg})
}

// observe: a poll answer that leaves the job in flight; st "" keeps the
// job's current state (a status nobody documented).
func observe(t testing.TB, s *Store, id string, st lifecycle.State, remote string, qp *int) error {
	if st == "" {
		j, err := s.Job(t.Context(), id)
		if err != nil {
			return err
		}
		st = j.State
	}
	return s.Apply(t.Context(), id, lifecycle.Step{To: st, Remote: remote, QueuePosition: qp})
}

// completed: finished with outputs.
func completed(t testing.TB, s *Store, id, remote string, outputs []string, cost *float64) error {
	return s.Apply(t.Context(), id, lifecycle.Step{To: lifecycle.Completed, Remote: remote, Outputs: outputs, Cost: cost,
		Detail: fmt.Sprintf("%d output(s)", len(outputs))})
}

// failed: ended at RunComfy without output.
func failed(t testing.TB, s *Store, id, remote, msg string, cost *float64) error {
	return s.Apply(t.Context(), id, lifecycle.Step{To: lifecycle.Failed, Remote: remote, Error: msg, Detail: msg, Cost: cost})
}

// cancelled: cancelled at RunComfy.
func cancelled(t testing.TB, s *Store, id, remote, msg string) error {
	return s.Apply(t.Context(), id, lifecycle.Step{To: lifecycle.Cancelled, Remote: remote, Error: msg, Detail: msg})
}

// setOutputs: a completed job's output URLs refreshed.
func setOutputs(t testing.TB, s *Store, id string, outputs []string) error {
	return s.Apply(t.Context(), id, lifecycle.Step{To: lifecycle.Completed, Outputs: outputs, Detail: "output URLs refreshed"})
}

// lastFileSaved: the last output saved, and the job done, in one write.
func lastFileSaved(t testing.TB, s *Store, id string, f File) error {
	return s.Apply(t.Context(), id, lifecycle.Step{To: lifecycle.Done}, f)
}

// markDone: every output saved.
func markDone(t testing.TB, s *Store, id string) error {
	return s.Apply(t.Context(), id, lifecycle.Step{To: lifecycle.Done})
}

// redownload: a done job's file went missing on disk.
func redownload(t testing.TB, s *Store, id, why string) error {
	return s.Apply(t.Context(), id, lifecycle.Step{To: lifecycle.Completed, Detail: why})
}

// toState walks a freshly added job along the happy path up to st.
func toState(t testing.TB, s *Store, id string, st lifecycle.State) {
	t.Helper()
	steps := []lifecycle.State{lifecycle.Pending, lifecycle.Submitting, lifecycle.Queued, lifecycle.Running, lifecycle.Completed, lifecycle.Done}
	cur := job(t, s, id).State
	from := 0 // failed, cancelled and unknown jobs start again from submitting
	for i, x := range steps {
		if x == cur {
			from = i
		}
	}
	for _, next := range steps[from+1:] {
		if job(t, s, id).State == st {
			return
		}
		switch next {
		case lifecycle.Submitting:
			must(t, beginSubmit(t, s, id))
		case lifecycle.Queued:
			// A request id belongs to one submission: a later attempt's is
			// its own.
			req := "req-" + id
			if n := job(t, s, id).Attempts; n > 1 {
				req = fmt.Sprintf("%s-%d", req, n)
			}
			must(t, submitted(t, s, id, req))
		case lifecycle.Running:
			must(t, observe(t, s, id, lifecycle.Running, "in_progress", nil))
		case lifecycle.Completed:
			must(t, completed(t, s, id, "succeeded", []string{"https://x/" + id + "/0.png"}, ptr(0.25)))
		case lifecycle.Done:
			must(t, s.FileSaved(t.Context(), id, File{N: 0, URL: "https://x/" + id + "/0.png", Path: id + "/0.png", Bytes: 3, SHA256: "abc"}))
			must(t, markDone(t, s, id))
		}
	}
	if got := job(t, s, id).State; got != st {
		t.Fatalf("job %s: reached %s, want %s", id, got, st)
	}
}
