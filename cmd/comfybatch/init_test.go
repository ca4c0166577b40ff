package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInit: init writes the starter manifest (jobs.yaml by default), which
// validates as it stands; it never overwrites a file (exit 2, the file
// untouched); - writes it to stdout.
func TestInit(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	r := runMain(t, nil, "init")
	if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "wrote jobs.yaml") {
		t.Fatalf("init: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	got, err := os.ReadFile("jobs.yaml")
	if err != nil || !bytes.Equal(got, starter) {
		t.Fatalf("jobs.yaml is not the starter manifest (%v)", err)
	}
	if r := runMain(t, nil, "validate", "jobs.yaml"); r.code != 0 || r.stderr != "" {
		t.Fatalf("the starter manifest does not validate cleanly: exit %d\n%s", r.code, r.stderr)
	}

	const edited = "model: my/edits\n"
	if err := os.WriteFile("jobs.yaml", []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"init"}, {"init", "jobs.yaml"}, {"init", filepath.Join(dir, "jobs.yaml")}} {
		r := runMain(t, nil, args...)
		if r.code != 2 || !strings.Contains(r.stderr, "already exists") {
			t.Errorf("%v over an existing file: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
	if got, _ := os.ReadFile("jobs.yaml"); string(got) != edited {
		t.Fatalf("init overwrote an existing manifest: %q", got)
	}

	if r := runMain(t, nil, "init", "other.yaml"); r.code != 0 {
		t.Fatalf("init other.yaml: exit %d, %s", r.code, r.stderr)
	}
	if r := runMain(t, nil, "init", "-"); r.code != 0 || r.stdout != string(starter) {
		t.Fatalf("init -: exit %d, %d bytes on stdout, want the starter's %d", r.code, len(r.stdout), len(starter))
	}
	for _, args := range [][]string{{"init", "no/such/dir/jobs.yaml"}, {"init", "a.yaml", "b.yaml"}} {
		if r := runMain(t, nil, args...); r.code != 2 {
			t.Errorf("%v: exit %d, want 2: %s", args, r.code, r.stderr)
		}
	}
}
