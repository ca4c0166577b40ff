package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"comfybatch/runcomfy/runcomfytest"
	"comfybatch/store"
)

// TestBrokenManifests: each exits 2 naming the line, and not one request
// reaches the API, and no ledger is created.
func TestBrokenManifests(t *testing.T) {
	srv := runcomfytest.New(runcomfytest.Config{Token: testToken})
	api := srv.Start()
	defer srv.Close()
	head := "version: 1\nmodel: " + testModel + "\njobs:\n"
	cases := []struct {
		name, body, want string
	}{
		{"syntax", head + "  - id: a\n    input: {prompt: \"x\"\n", "jobs.yaml:5"},
		{"unknown key", head + "  - id: a\n    inptu: {prompt: x}\n", "jobs.yaml:5:5"},
		{"duplicate id", head + "  - id: a\n    input: {prompt: x}\n  - id: a\n    input: {prompt: y}\n", "jobs.yaml:6"},
		{"id escapes with ../", head + "  - id: ../evil\n    input: {prompt: x}\n", "jobs.yaml:4"},
		{"id with slash", head + "  - id: a/b\n    input: {prompt: x}\n", "jobs.yaml:4"},
		{"wrong type", head + "  - id: a\n    input: [1, 2]\n", "jobs.yaml:5"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "jobs.yaml")
			os.WriteFile(path, []byte(c.body), 0o644)
			r := runBinary(t, tokenEnv(api), "run", path)
			if r.code != 2 {
				t.Fatalf("exit %d, want 2:\n%s", r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, c.want) {
				t.Fatalf("stderr does not name %s:\n%s", c.want, r.stderr)
			}
			if _, err := os.Stat(filepath.Join(dir, "jobs.ledger.db")); err == nil {
				t.Errorf("a broken manifest created a ledger")
			}
		})
	}
	if st := srv.Stats(); st.Submits+st.Status+st.Result+st.Files != 0 {
		t.Fatalf("broken manifests made requests: %+v", st)
	}
}

// TestForeignLedger: --ledger pointing at a file that is not a ledger exits 2
// and leaves it byte for byte unchanged.
func TestForeignLedger(t *testing.T) {
	srv := runcomfytest.New(runcomfytest.Config{Token: testToken})
	api := srv.Start()
	defer srv.Close()
	dir := t.TempDir()
	manifest, _ := writeManifest(t, dir, 3)
	for name, content := range map[string][]byte{
		"notes.txt": []byte("my precious notes\n"),
		"other.db":  append([]byte("SQLite format 3\x00"), bytes.Repeat([]byte{0}, 4080)...),
	} {
		path := filepath.Join(dir, name)
		os.WriteFile(path, content, 0o644)
		r := runBinary(t, tokenEnv(api), "run", manifest, "--ledger", path)
		if r.code != 2 || !strings.Contains(r.stderr, "not a comfybatch ledger") {
			t.Fatalf("%s: exit %d, want 2 with a clear message:\n%s", name, r.code, r.stderr)
		}
		after, _ := os.ReadFile(path)
		if !bytes.Equal(after, content) {
			t.Fatalf("%s was modified", name)
		}
		for _, side := range []string{"-wal", "-shm", "-journal"} {
			if _, err := os.Stat(path + side); err == nil {
				t.Errorf("%s%s was created", name, side)
			}
		}
	}
	if st := srv.Stats(); st.Submits != 0 {
		t.Fatalf("submitted %d jobs with a foreign ledger", st.Submits)
	}
}

// TestBusyLedger: a second runner on a ledger in use exits 3 and submits
// nothing.
func TestBusyLedger(t *testing.T) {
	srv := runcomfytest.New(runcomfytest.Config{Token: testToken})
	api := srv.Start()
	defer srv.Close()
	dir := t.TempDir()
	manifest, _ := writeManifest(t, dir, 3)
	held, err := store.Open(filepath.Join(dir, "jobs.ledger.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	r := runBinary(t, tokenEnv(api), "run", manifest)
	if r.code != 3 || !strings.Contains(r.stderr, "in use by another comfybatch") {
		t.Fatalf("exit %d, want 3 with a clear message:\n%s", r.code, r.stderr)
	}
	if srv.Stats().Submits != 0 {
		t.Fatal("the second runner submitted")
	}
	// status still answers while the ledger is held.
	if r := runBinary(t, nil, "status", manifest); r.code != 0 {
		t.Fatalf("status on a held ledger exited %d: %s", r.code, r.stderr)
	}
}

// TestNoToken: run without a token is a configuration error, exit 2.
func TestNoToken(t *testing.T) {
	dir := t.TempDir()
	manifest, _ := writeManifest(t, dir, 1)
	r := runBinary(t, []string{"RUNCOMFY_TOKEN=", "RUNCOMFY_API_TOKEN=", "YOUR_API_TOKEN="}, "run", manifest)
	if r.code != 2 || !strings.Contains(r.stderr, "RUNCOMFY_TOKEN") {
		t.Fatalf("exit %d, want 2 naming RUNCOMFY_TOKEN:\n%s", r.code, r.stderr)
	}
}

// TestFakeQuickstart runs the README's first command.
func TestFakeQuickstart(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile("../../examples/quickstart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "quickstart.yaml")
	os.WriteFile(path, data, 0o644)
	r := runBinary(t, []string{"RUNCOMFY_TOKEN=", "RUNCOMFY_API_TOKEN=", "YOUR_API_TOKEN="}, "run", path, "--fake")
	if r.code != 0 {
		t.Fatalf("exit %d:\n%s", r.code, r.stderr)
	}
	entries, _ := filepath.Glob(filepath.Join(dir, "quickstart-out", "*.mp4"))
	if len(entries) != 3 {
		t.Fatalf("%d videos, want 3", len(entries))
	}
}
