package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"comfybatch/runcomfy/runcomfytest"
)

// Outputs replaced by symlinks to files elsewhere (git-annex and DVC keep a
// dataset's files this way, the link leading out of the output folder) are
// still there for the run, which stats them through the link: the no-op
// rerun must see them too, and not take every such rerun the long way.
func TestNoOpWithOutputsLinkedFromElsewhere(t *testing.T) {
	_, env := serveFake(t, runcomfytest.Config{})
	dir := t.TempDir()
	manifest, _ := writeManifest(t, dir, 2)
	run := func() result {
		t.Helper()
		return runBinary(t, env, "run", manifest, "-v", "--poll-max", "50ms")
	}
	noop := func(r result) bool { return strings.Contains(r.stderr, "nothing changed since the last run") }
	if r := run(); r.code != 0 {
		t.Fatalf("first run: %d\n%s", r.code, r.stderr)
	}
	out := filepath.Join(dir, "out")
	files, _ := filepath.Glob(filepath.Join(out, "*.mp4"))
	if len(files) != 2 {
		t.Fatalf("outputs %v, want 2", files)
	}
	store := t.TempDir()
	for _, f := range files {
		kept := filepath.Join(store, filepath.Base(f))
		if err := os.Rename(f, kept); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(kept, f); err != nil {
			t.Fatal(err)
		}
	}
	if r := run(); r.code != 0 {
		t.Fatalf("rerun: %d\n%s", r.code, r.stderr)
	}
	if r := run(); r.code != 0 || !noop(r) {
		t.Fatalf("outputs linked from elsewhere: not a no-op rerun (exit %d)\n%s", r.code, r.stderr)
	}
}
