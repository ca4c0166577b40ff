package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExamples runs every manifest in examples/ with --fake, as the README
// tells a newcomer to, and checks each job ends done with its file listed in
// metadata.jsonl. Ledger and outputs go to a temp dir: the checkout is left
// alone.
func TestExamples(t *testing.T) {
	t.Parallel()
	want := map[string]int{"quickstart.yaml": 3, "dataset.yaml": 120, "from-csv.yaml": 5}
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
			for sc := bufio.NewScanner(f); sc.Scan(); rows++ {
				if !strings.Contains(sc.Text(), `"file_name"`) {
					t.Fatalf("metadata row %q", sc.Text())
				}
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
