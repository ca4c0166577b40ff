package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"comfybatch/runcomfy/runcomfytest"
)

// TestExamples runs every manifest in examples/ with --fake, as the README
// tells a newcomer to, and checks each job ends done with its file listed in
// metadata.jsonl. Ledger and outputs go to a temp dir: the checkout is left
// alone.
func TestExamples(t *testing.T) {
	t.Parallel()
	want := map[string]int{"quickstart.yaml": 3, "dataset.yaml": 120, "from-csv.yaml": 5, "frames.yaml": 8}
	found, _ := filepath.Glob("../../examples/*.yaml")
	if len(found) != len(want) {
		t.Errorf("examples/ holds %v; this test knows %v", found, want)
	}
	for name, jobs := range want {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			manifest := filepath.Join("../../examples", name)
			args := []string{"--fake", "--ledger", filepath.Join(dir, "ledger.db"), "--out", filepath.Join(dir, "out")}
			if r := runMain(t, nil, append([]string{"validate", manifest}, args...)...); r.code != 0 {
				t.Fatalf("validate exited %d:\n%s", r.code, r.stderr)
			}
			r := runMain(t, nil, append([]string{"run", manifest, "-j", "64", "--rps", "1000", "-q"}, args...)...)
			if r.code != 0 {
				t.Fatalf("run exited %d:\n%s", r.code, r.stderr)
			}
			f, err := os.Open(filepath.Join(dir, "out", "metadata.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			rows := 0
			sc := bufio.NewScanner(f)
			for ; sc.Scan(); rows++ {
				var row struct {
					FileName  string `json:"file_name"`
					RequestID string `json:"request_id"`
				}
				if err := json.Unmarshal(sc.Bytes(), &row); err != nil || row.FileName == "" || row.RequestID == "" {
					t.Fatalf("metadata row %q: %v", sc.Text(), err)
				}
				// The file is what the fake served for that request.
				got, err := os.ReadFile(filepath.Join(dir, "out", row.FileName))
				if err != nil {
					t.Fatal(err)
				}
				if want := runcomfytest.OutputBytes(row.RequestID, 0); len(got) == 0 || !bytes.Equal(got, want) {
					t.Fatalf("%s: %d bytes on disk, not the %d bytes the fake served for %s", row.FileName, len(got), len(want), row.RequestID)
				}
			}
			if err := sc.Err(); err != nil {
				t.Fatal(err)
			}
			if rows != jobs {
				t.Fatalf("metadata.jsonl has %d rows, want %d", rows, jobs)
			}
			// results exports every job, one line each.
			r = runMain(t, nil, append([]string{"results", manifest}, args...)...)
			if n := strings.Count(r.stdout, "\n"); r.code != 0 || n != jobs || strings.Count(r.stdout, `"state":"done"`) != jobs {
				t.Fatalf("results: exit %d, %d lines, want %d done:\n%s", r.code, n, jobs, r.stderr)
			}
		})
	}
}
