package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"comfybatch/runcomfy/runcomfytest"
)

// edits is a one-job manifest whose input the test changes between runs of
// the binary, against the simulated API.
type edits struct {
	t        *testing.T
	srv      *runcomfytest.Server
	env      []string
	manifest string
	out      string
	original []byte
}

func newEdits(t *testing.T) *edits {
	srv, env := serveFake(t, runcomfytest.Config{CostUSD: 0.25})
	dir := t.TempDir()
	manifest, _ := writeManifest(t, dir, 1)
	original, _ := os.ReadFile(manifest)
	return &edits{t: t, srv: srv, env: env, manifest: manifest, out: filepath.Join(dir, "out"), original: original}
}

// input is the manifest with the job's prompt changed by suffix ("" for
// the original).
func (e *edits) input(suffix string) []byte {
	if suffix == "" {
		return e.original
	}
	return bytes.Replace(e.original, []byte("take 0"), []byte("take 0, "+suffix), 1)
}

// run writes the manifest with input suffix, runs it to the end and gives
// the job's request id.
func (e *edits) run(suffix string) string {
	e.t.Helper()
	os.WriteFile(e.manifest, e.input(suffix), 0o644)
	if r := runBinary(e.t, e.env, "run", e.manifest, "--poll-max", "50ms"); r.code != 0 {
		e.t.Fatalf("input %q: exit %d:\n%s", suffix, r.code, r.stderr)
	}
	return status(e.t, e.manifest).Jobs[0].RequestID
}

func (e *edits) live() string { return filepath.Join(e.out, "clip-0000.mp4") }

func (e *edits) kept(request string) string {
	return filepath.Join(e.out, "_history", "clip-0000", request, "clip-0000.mp4")
}

// holds checks that the job is done with request's result: the file on disk
// holds the bytes RunComfy served for that request, and the ledger says so.
func (e *edits) holds(request string) {
	e.t.Helper()
	s := status(e.t, e.manifest)
	j := s.Jobs[0]
	data, _ := os.ReadFile(e.live())
	if j.State != "done" || j.RequestID != request || len(j.Files) != 1 || !bytes.Equal(data, runcomfytest.OutputBytes(request, 0)) {
		e.t.Fatalf("job %s with request %s (%d files); the file holds request %s's bytes: %v",
			j.State, j.RequestID, len(j.Files), request, bytes.Equal(data, runcomfytest.OutputBytes(request, 0)))
	}
}

// A → B → A (reused) → C → B (reused): each restored file is its own
// request's and each is kept under its own request, and only the three
// inputs are paid for. (Found in review: the fourth sync filed A's file
// under B's attempt, and the fifth restored it as B's.)
func TestHistoryAcrossManyEdits(t *testing.T) {
	e := newEdits(t)
	rA, rB := e.run(""), e.run("B")
	if got := e.run(""); got != rA {
		t.Fatalf("A's request is %s after changing back, want %s", got, rA)
	}
	e.holds(rA)
	rC := e.run("C")
	if got := e.run("B"); got != rB {
		t.Fatalf("B's request is %s after changing back, want %s", got, rB)
	}
	e.holds(rB)
	if n := e.srv.Stats().Created; n != 3 {
		t.Fatalf("%d jobs created for three inputs", n)
	}
	for _, req := range []string{rA, rC} {
		if b, err := os.ReadFile(e.kept(req)); err != nil || !bytes.Equal(b, runcomfytest.OutputBytes(req, 0)) {
			t.Fatalf("request %s's result is not kept whole: %v", req, err)
		}
	}
}

// A crash after a restore's rename and before the ledger's commit: A's
// file is back at the live name, B's archived, the ledger still says B.
// The next run heals it: A's result is the job's, nothing is paid again.
func TestCrashAfterRestoreHeals(t *testing.T) {
	e := newEdits(t)
	rA, rB := e.run(""), e.run("B")
	os.MkdirAll(filepath.Dir(e.kept(rB)), 0o755)
	if err := os.Rename(e.live(), e.kept(rB)); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(e.kept(rA), e.live()); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if got := e.run(""); got != rA {
			t.Fatalf("request %s after the crash, want A's %s", got, rA)
		}
		e.holds(rA)
	}
	if b, err := os.ReadFile(e.kept(rB)); err != nil || !bytes.Equal(b, runcomfytest.OutputBytes(rB, 0)) {
		t.Fatalf("B's result is not kept: %v", err)
	}
	// And B's kept file is on the ledger's books: changing back to B puts
	// it back in place, without fetching it again.
	files := e.srv.Stats().Files
	if got := e.run("B"); got != rB {
		t.Fatalf("request %s after changing back to B, want %s", got, rB)
	}
	e.holds(rB)
	if n := e.srv.Stats().Files; n != files {
		t.Fatalf("B's result was downloaded again (%d file requests) instead of restored from _history", n-files)
	}
	if n := e.srv.Stats().Created; n != 2 {
		t.Fatalf("%d jobs created for two inputs", n)
	}
}
