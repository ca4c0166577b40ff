package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"comfybatch/runcomfy/runcomfytest"
)

// A crash after Restore's rename, before the Sync transaction commits.
func TestCrashAfterRestoreHeals(t *testing.T) {
	srv := runcomfytest.New(runcomfytest.Config{Token: testToken, CostUSD: 0.25})
	api := srv.Start()
	defer srv.Close()
	dir := t.TempDir()
	manifest, _ := writeManifest(t, dir, 1)
	env := tokenEnv(api)
	A, _ := os.ReadFile(manifest)
	B := bytes.Replace(A, []byte("take 0"), []byte("take 0, B"), 1)
	out := filepath.Join(dir, "out")
	run := func(what string, m []byte) (string, result) {
		t.Helper()
		os.WriteFile(manifest, m, 0o644)
		r := runBinary(t, env, "run", manifest, "--poll-max", "50ms")
		return status(t, manifest).Jobs[0].RequestID, r
	}
	rA, _ := run("A", A)
	rB, _ := run("B", B)
	live := filepath.Join(out, "clip-0000.mp4")
	hB := filepath.Join(out, "_history", "clip-0000", rB, "clip-0000.mp4")
	hA := filepath.Join(out, "_history", "clip-0000", rA, "clip-0000.mp4")
	os.MkdirAll(filepath.Dir(hB), 0o755)
	if err := os.Rename(live, hB); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(hA, live); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		_, r := run("A again", A)
		t.Logf("rerun %d: exit %d\n%s", i, r.code, r.stderr)
	}
}
