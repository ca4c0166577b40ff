package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary manifests, plus an arbitrary CSV and JSONL file
// they may include as in.csv and in.jsonl. Parse must never panic, must fail
// with Errors, and every job it accepts must have an id that is safe as a
// file name.
func FuzzParse(f *testing.F) {
	read := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join(manifestDir, name))
		if err != nil {
			f.Fatal(err)
		}
		return data
	}
	csvSeed, jsonlSeed := read("ok_basic.csv"), read("ok_basic.jsonl")
	manifests, _ := filepath.Glob(filepath.Join(manifestDir, "*.yaml"))
	for _, path := range manifests {
		f.Add(read(filepath.Base(path)), csvSeed, jsonlSeed)
	}
	including := []byte("model: m\ndefaults: {duration: 5}\ninclude: [in.csv, in.jsonl]\n")
	csvs, _ := filepath.Glob(filepath.Join(manifestDir, "*.csv"))
	jsonls, _ := filepath.Glob(filepath.Join(manifestDir, "*.jsonl"))
	for i := range max(len(csvs), len(jsonls)) {
		f.Add(including, read(filepath.Base(csvs[i%len(csvs)])), read(filepath.Base(jsonls[i%len(jsonls)])))
	}

	f.Fuzz(func(t *testing.T, manifest, csvData, jsonlData []byte) {
		dir := t.TempDir()
		write(t, dir, "in.csv", string(csvData))
		write(t, dir, "in.jsonl", string(jsonlData))
		// A low cap keeps each run fast; the cap itself is under test too.
		m, err := Parse(filepath.Join(dir, "m.yaml"), manifest, Options{FieldType: stubFieldType, MaxJobs: 2000})
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error is not a non-empty Errors: %#v", err)
			}
			for _, e := range errs {
				if e == nil || e.Msg == "" {
					t.Fatalf("empty error in %v", errs)
				}
			}
			_ = err.Error()
			return
		}
		if len(m.Jobs) == 0 {
			t.Fatal("accepted a manifest without jobs")
		}
		seen := make(map[string]bool, len(m.Jobs))
		for _, j := range m.Jobs {
			id := j.ID
			if !ValidID(id) || filepath.Base(id) != id || !filepath.IsLocal(id) ||
				id == "." || id == ".." || strings.ContainsAny(id, `/\`) {
				t.Fatalf("unsafe id %q", id)
			}
			if seen[id] {
				t.Fatalf("id %q given twice", id)
			}
			seen[id] = true
			if j.Model == "" {
				t.Fatalf("job %s has no model", id)
			}
			in, err := j.Values()
			if err != nil {
				t.Fatalf("job %s: input %s does not decode: %v", id, j.Input, err)
			}
			// The fingerprint is the one json.Marshal of the decoded values
			// gives: the input bytes are canonical.
			whole, err := json.Marshal(map[string]any{"model": j.Model, "input": in})
			if err != nil {
				t.Fatalf("job %s: %v", id, err)
			}
			if sum := sha256.Sum256(whole); hex.EncodeToString(sum[:]) != j.Fingerprint() {
				t.Fatalf("job %s: fingerprint %s does not match its model and input %s", id, j.Fingerprint(), whole)
			}
			for k, v := range in {
				if err := jsonCompatible(v); err != nil {
					t.Fatalf("job %s: input.%s: %v", id, k, err)
				}
			}
		}
	})
}

// jsonCompatible checks that a value holds only the types Job.Input promises.
func jsonCompatible(v any) error {
	switch v := v.(type) {
	case string, bool, nil, int64, float64:
		return nil
	case []any:
		for _, e := range v {
			if err := jsonCompatible(e); err != nil {
				return err
			}
		}
		return nil
	case map[string]any:
		for _, e := range v {
			if err := jsonCompatible(e); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("unexpected type %T", v)
}

// BenchmarkLoad100k loads a manifest of 100,000 jobs: 2,000 matrix jobs of
// 25 combinations each, and a 50,000-row CSV include.
func BenchmarkLoad100k(b *testing.B) {
	dir := b.TempDir()
	var y strings.Builder
	y.WriteString("version: 1\nmodel: wan-ai/wan-2-6/flash/image-to-video\ndefaults:\n  resolution: 720P\n  shot_type: single\njobs:\n")
	for i := range 2000 {
		fmt.Fprintf(&y, "  - id: clip-%d\n    input:\n      prompt: \"Scene %d: a slow pan across a harbour at dawn\"\n      img_url: https://example.com/img/%d.png\n    matrix:\n      seed: [1, 2, 3, 4, 5]\n      duration: [5, 6, 7, 8, 10]\n", i, i, i)
	}
	y.WriteString("include:\n  - rows.csv\n")
	var c strings.Builder
	c.WriteString("id,prompt,img_url,seed,duration\n")
	for i := range 50000 {
		fmt.Fprintf(&c, "row-%d,\"Row %d, a cat on a windowsill\",https://example.com/row/%d.png,%d,5\n", i, i, i, i)
	}
	write(b, dir, "m.yaml", y.String())
	write(b, dir, "rows.csv", c.String())
	path := filepath.Join(dir, "m.yaml")

	b.ReportAllocs()
	for b.Loop() {
		m, err := Load(path, Options{FieldType: stubFieldType})
		if err != nil {
			b.Fatal(err)
		}
		if len(m.Jobs) != 100_000 {
			b.Fatalf("got %d jobs", len(m.Jobs))
		}
	}
}
