package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"comfybatch/runcomfy/runcomfytest"
)

// A rerun with nothing to do skips the manifest, and any change is still
// noticed: an edited include, a deleted output, a flag with work to do.
func TestNoOpRerunNoticesEveryChange(t *testing.T) {
	srv, env := serveFake(t, runcomfytest.Config{})
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "rows.csv"), []byte("prompt,img_url,seed\nboat,https://example.com/b.png,1\ncar,https://example.com/c.png,2\n"), 0o644)
	manifest := filepath.Join(dir, "jobs.yaml")
	os.WriteFile(manifest, []byte("model: wan-ai/wan-2-6/flash/image-to-video\ndefaults: {duration: 5}\ninclude: [rows.csv]\n"), 0o644)
	run := func(args ...string) result {
		t.Helper()
		return runBinary(t, env, append([]string{"run", manifest, "-v", "--poll-max", "50ms"}, args...)...)
	}
	noop := func(r result) bool { return strings.Contains(r.stderr, "nothing changed since the last run") }

	if r := run(); r.code != 0 || noop(r) {
		t.Fatalf("first run: %d %v\n%s", r.code, noop(r), r.stderr)
	}
	if r := run(); r.code != 0 || !noop(r) || !strings.Contains(r.stderr, "done 2") {
		t.Fatalf("second run did not take the short way: %d\n%s", r.code, r.stderr)
	}
	// An include edited: a new job is noticed and submitted.
	os.WriteFile(filepath.Join(dir, "rows.csv"), []byte("prompt,img_url,seed\nboat,https://example.com/b.png,1\ncar,https://example.com/c.png,2\nbus,https://example.com/d.png,3\n"), 0o644)
	if r := run(); r.code != 0 || noop(r) || srv.Stats().Created != 3 {
		t.Fatalf("an edited include: %d, noop %v, created %d\n%s", r.code, noop(r), srv.Stats().Created, r.stderr)
	}
	if r := run(); !noop(r) {
		t.Fatalf("not a no-op after the include's run:\n%s", r.stderr)
	}
	// An output deleted: downloaded again.
	files, _ := filepath.Glob(filepath.Join(dir, "jobs-out", "*.mp4"))
	os.Remove(files[0])
	if r := run(); r.code != 0 || noop(r) {
		t.Fatalf("a deleted output: %d, noop %v\n%s", r.code, noop(r), r.stderr)
	}
	if _, err := os.Stat(files[0]); err != nil {
		t.Fatal("the deleted output was not downloaded again")
	}
	// metadata.jsonl deleted: written again (nothing failed when the short
	// way did not look for it).
	meta := filepath.Join(dir, "jobs-out", "metadata.jsonl")
	os.Remove(meta)
	if r := run(); r.code != 0 || noop(r) {
		t.Fatalf("a deleted metadata.jsonl: %d, noop %v\n%s", r.code, noop(r), r.stderr)
	}
	if b, err := os.ReadFile(meta); err != nil || strings.Count(string(b), "\n") != 3 {
		t.Fatalf("metadata.jsonl not written again with the 3 jobs: %v\n%s", err, b)
	}
	// The manifest itself edited (a comment): the long way, then short again.
	b, _ := os.ReadFile(manifest)
	os.WriteFile(manifest, append(b, []byte("# a note\n")...), 0o644)
	if r := run(); noop(r) {
		t.Fatal("an edited manifest took the short way")
	}
	if r := run(); !noop(r) {
		t.Fatal("not a no-op after the edit's run")
	}
	if srv.Stats().Created != 3 {
		t.Fatalf("created %d, want 3", srv.Stats().Created)
	}
}

// A job edited while its request was at RunComfy is collected first and
// submitted with its new input by the next run: that run must not take the
// short way (found checking the no-op path: it would have, for ever).
func TestNoOpAfterADeferredChange(t *testing.T) {
	srv, env := serveFake(t, runcomfytest.Config{QueueTime: 300 * time.Millisecond})
	manifest, _ := writeManifest(t, t.TempDir(), 1)
	if r := runBinary(t, env, "run", manifest, "--submit-only"); r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	b, _ := os.ReadFile(manifest)
	os.WriteFile(manifest, []byte(strings.Replace(string(b), "take 0", "take 0, edited", 1)), 0o644)
	if r := runBinary(t, env, "run", manifest, "--poll-max", "50ms"); r.code != 1 || srv.Stats().Created != 1 {
		t.Fatalf("the run collecting the earlier request: exit %d, created %d\n%s", r.code, srv.Stats().Created, r.stderr)
	}
	r := runBinary(t, env, "run", manifest, "-v", "--poll-max", "50ms")
	if r.code != 0 || strings.Contains(r.stderr, "nothing changed since the last run") || srv.Stats().Created != 2 {
		t.Fatalf("the next run: exit %d, created %d\n%s", r.code, srv.Stats().Created, r.stderr)
	}
}
