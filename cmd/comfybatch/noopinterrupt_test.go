package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Interrupted while a rerun looks at its ledger (its owner, the no-op's
// look, or the page check deferred until the run goes on to work: each
// reads with the run's context), a run is interrupted: exit 130, not exit 1
// or a usage error (2) saying the ledger could not be read.
func TestInterruptDuringDeferredCheck(t *testing.T) {
	dir := t.TempDir()
	manifest, _ := writeManifest(t, dir, 2)
	if r := runMain(t, nil, "run", manifest, "--fake", "--poll-max", "50ms"); r.code != 0 {
		t.Fatalf("first run: %d\n%s", r.code, r.stderr)
	}
	// An edited manifest: not a no-op, so the run checks the ledger.
	b, _ := os.ReadFile(manifest)
	if err := os.WriteFile(manifest, append(b, []byte("# edited\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	sigs := make(chan os.Signal, 1)
	sigs <- os.Interrupt // the first signal, before the run looks
	var out, errb bytes.Buffer
	code := Main(sigs, []string{"run", manifest, "--fake", "--poll-max", "50ms"}, &out, &errb, func(string) string { return "" })
	if code != exitInterrupted || strings.Contains(errb.String(), "context canceled") || !strings.Contains(errb.String(), "interrupted") {
		t.Fatalf("exit %d, want %d (interrupted); stderr:\n%s", code, exitInterrupted, errb.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "jobs.ledger.db")); err != nil {
		t.Fatal(err)
	}
}
