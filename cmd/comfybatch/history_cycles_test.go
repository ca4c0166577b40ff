package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"comfybatch/runcomfy/runcomfytest"
)

// A → B → A (reused) → C → B (reused): each restored file is its own
// request's, and each kept under its own request (found in review: the
// fourth sync filed A's file under B's attempt, and the fifth restored it as B's).
func TestHistoryAcrossManyEdits(t *testing.T) {
	srv := runcomfytest.New(runcomfytest.Config{Token: testToken, CostUSD: 0.25})
	api := srv.Start()
	defer srv.Close()
	dir := t.TempDir()
	manifest, _ := writeManifest(t, dir, 1)
	env := tokenEnv(api)
	A, _ := os.ReadFile(manifest)
	B := bytes.Replace(A, []byte("take 0"), []byte("take 0, B"), 1)
	C := bytes.Replace(A, []byte("take 0"), []byte("take 0, C"), 1)
	out := filepath.Join(dir, "out")
	run := func(what string, m []byte) string {
		t.Helper()
		os.WriteFile(manifest, m, 0o644)
		if r := runBinary(t, env, "run", manifest, "--poll-max", "50ms"); r.code != 0 {
			t.Fatalf("%s: exit %d:\n%s", what, r.code, r.stderr)
		}
		return status(t, manifest).Jobs[0].RequestID
	}
	rA := run("A", A)
	rB := run("B", B)
	if got := run("A again", A); got != rA {
		t.Fatalf("A not reused")
	}
	rC := run("C", C)
	_ = rC
	got := run("B again", B)
	t.Logf("created %d; request now %s (B was %s)", srv.Stats().Created, got, rB)
	data, _ := os.ReadFile(filepath.Join(out, "clip-0000.mp4"))
	switch {
	case bytes.Equal(data, runcomfytest.OutputBytes(rB, 0)):
		t.Logf("file is B's: ok")
	case bytes.Equal(data, runcomfytest.OutputBytes(rA, 0)):
		t.Errorf("ledger says request %s (B) done, but clip-0000.mp4 holds A's result (%s)", got, rA)
	default:
		t.Errorf("file is neither")
	}
	s := status(t, manifest)
	t.Logf("state %s files %+v", s.Jobs[0].State, s.Jobs[0].Files)
	filepath.Walk(out, func(p string, fi os.FileInfo, err error) error { t.Log(p); return nil })
}
