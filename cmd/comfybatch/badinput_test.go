package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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
			if err := os.WriteFile(path, []byte(c.body), 0o644); err != nil {
				t.Fatal(err)
			}
			r := runBinary(t, tokenEnv(api), "run", path)
			if r.code != 2 {
				t.Fatalf("exit %d, want 2:\n%s", r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, c.want) {
				t.Fatalf("stderr does not name %s:\n%s", c.want, r.stderr)
			}
			// No ledger under any name (*.db, -wal, -shm, -journal), no
			// output folder, no lock or temp file: the folder holds the
			// manifest and nothing else.
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			if len(names) != 1 || names[0] != "jobs.yaml" {
				t.Errorf("a broken manifest left files behind: %v, want only jobs.yaml", names)
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
		if err := os.WriteFile(path, content, 0o644); err != nil {
			t.Fatal(err)
		}
		r := runBinary(t, tokenEnv(api), "run", manifest, "--ledger", path)
		if r.code != 2 || !strings.Contains(r.stderr, "not a comfybatch ledger") {
			t.Fatalf("%s: exit %d, want 2 with a clear message:\n%s", name, r.code, r.stderr)
		}
		after, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
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

// TestFakeQuickstart runs the README's first command, and checks that each
// video on disk is what the simulated API served for its request.
func TestFakeQuickstart(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile("../../examples/quickstart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "quickstart.yaml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	r := runBinary(t, []string{"RUNCOMFY_TOKEN=", "RUNCOMFY_API_TOKEN=", "YOUR_API_TOKEN="}, "run", path, "--fake")
	if r.code != 0 {
		t.Fatalf("exit %d:\n%s", r.code, r.stderr)
	}
	out := filepath.Join(dir, "quickstart-out")
	entries, err := filepath.Glob(filepath.Join(out, "*.mp4"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Fatalf("%d videos, want 3", len(entries))
	}

	// The in-process fake derives each output from its request id, which
	// metadata.jsonl names: the file must be those bytes, whole.
	meta, err := os.ReadFile(filepath.Join(out, "metadata.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	rows := strings.Split(strings.TrimSpace(string(meta)), "\n")
	if len(rows) != 3 {
		t.Fatalf("metadata.jsonl has %d rows, want 3:\n%s", len(rows), meta)
	}
	ledger := map[string]string{} // file path → sha256 the ledger recorded
	for _, j := range status(t, path).Jobs {
		if j.State != "done" || len(j.Files) != 1 {
			t.Fatalf("job %s: state %s, %d files", j.ID, j.State, len(j.Files))
		}
		ledger[j.Files[0].Path] = j.Files[0].SHA256
	}
	seen := map[string]bool{}
	for _, l := range rows {
		var row struct {
			FileName  string `json:"file_name"`
			ID        string `json:"id"`
			RequestID string `json:"request_id"`
		}
		if err := json.Unmarshal([]byte(l), &row); err != nil {
			t.Fatalf("metadata row %q: %v", l, err)
		}
		if row.FileName != row.ID+".mp4" || row.RequestID == "" || seen[row.FileName] {
			t.Fatalf("metadata row %s", l)
		}
		seen[row.FileName] = true
		got, err := os.ReadFile(filepath.Join(out, row.FileName))
		if err != nil {
			t.Fatal(err)
		}
		want := runcomfytest.OutputBytes(row.RequestID, 0)
		if len(got) == 0 || !bytes.Equal(got, want) {
			t.Fatalf("%s: %d bytes on disk, not the %d bytes the fake serves for request %s", row.FileName, len(got), len(want), row.RequestID)
		}
		sum := sha256.Sum256(got)
		if ledger[row.FileName] != hex.EncodeToString(sum[:]) {
			t.Fatalf("%s: the ledger records sha256 %q, the file has %x", row.FileName, ledger[row.FileName], sum)
		}
	}
	for _, e := range entries {
		if !seen[filepath.Base(e)] {
			t.Fatalf("%s is not in metadata.jsonl", e)
		}
	}
}

// TestBadRates: --rps is a rate the client can lower on a 429; anything
// else is refused before the ledger is touched.
func TestBadRates(t *testing.T) {
	dir := t.TempDir()
	manifest, _ := writeManifest(t, dir, 1)
	for _, rps := range []string{"0", "-1", "NaN", "inf", "+Inf"} {
		r := runMain(t, nil, "run", manifest, "--fake", "--rps", rps)
		if r.code != exitUsage || !strings.Contains(r.stderr, "--rps") {
			t.Errorf("--rps %s: exit %d, want %d naming --rps:\n%s", rps, r.code, exitUsage, r.stderr)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 1 || left[0] != manifest {
		t.Errorf("refused runs left %v beside the manifest", left)
	}
}
