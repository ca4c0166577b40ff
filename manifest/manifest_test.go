package manifest

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the .golden files in testdata/manifests")

// manifestDir holds the golden manifests; the tests cd there so that the
// file names in reports stay short and the same on every machine.
const manifestDir = "../testdata/manifests"

// stubFieldType stands in for a model schema: the fields the test manifests
// type, with "" for everything else.
func stubFieldType(model, field string) string {
	switch field {
	case "seed", "duration":
		return "integer"
	case "cfg":
		return "number"
	case "hd":
		return "boolean"
	case "tags":
		return "array"
	case "extra":
		return "object"
	case "prompt":
		return "string"
	}
	return ""
}

// TestGolden loads every testdata/manifests/*.yaml and compares the outcome
// (the error report, or a dump of the jobs) with <name>.golden. bad_* files
// must fail and ok_* files must load, so a golden can never quietly record
// the wrong outcome.
func TestGolden(t *testing.T) {
	t.Chdir(manifestDir)
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bad := 0
	for _, file := range files {
		name := strings.TrimSuffix(file, ".yaml")
		t.Run(name, func(t *testing.T) {
			m, err := Load(file, Options{FieldType: stubFieldType})
			var got string
			switch {
			case strings.HasPrefix(name, "bad_"):
				var errs Errors
				if !errors.As(err, &errs) {
					t.Fatalf("want Errors, got %v (%T)", err, err)
				}
				got = err.Error() + "\n"
			case strings.HasPrefix(name, "ok_"):
				if err != nil {
					t.Fatalf("unexpected errors:\n%v", err)
				}
				got = dump(m)
			default:
				t.Fatalf("name %s must start with bad_ or ok_", file)
			}
			golden := name + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs (go test -update rewrites it)\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
		if strings.HasPrefix(name, "bad_") {
			bad++
		}
	}
	if bad < 20 {
		t.Errorf("only %d broken manifests; want at least 20", bad)
	}
}

// dump renders a manifest so that a golden file shows every job's id,
// model, place, fingerprint, and each input field's value, Go type and place.
func dump(m *Manifest) string {
	var b strings.Builder
	defaults, _ := json.Marshal(m.Defaults)
	fmt.Fprintf(&b, "file %s\ndir %s\nmodel %s\noutput %q\ndefaults %s\njobs %d\n", m.File, m.Dir, m.Model, m.OutputDir, defaults, len(m.Jobs))
	for _, j := range m.Jobs {
		fmt.Fprintf(&b, "\njob %s\n  model %s\n  at %s\n  fingerprint %s\n", j.ID, j.Model, j.Pos, j.Fingerprint())
		in, err := j.Values()
		if err != nil {
			fmt.Fprintf(&b, "  input %s does not decode: %v\n", j.Input, err)
		}
		for _, k := range slices.Sorted(maps.Keys(in)) {
			v, _ := json.Marshal(in[k])
			at, _ := j.FieldPos(k)
			fmt.Fprintf(&b, "  %s = %s (%T) at %s\n", k, v, in[k], at)
		}
	}
	return b.String()
}

// values decodes a job's input, failing the test if it cannot.
func values(t *testing.T, j Job) map[string]any {
	t.Helper()
	in, err := j.Values()
	if err != nil {
		t.Fatalf("job %s: input %s: %v", j.ID, j.Input, err)
	}
	return in
}

func mustParse(t *testing.T, src string, opts Options) *Manifest {
	t.Helper()
	m, err := Parse("m.yaml", []byte(src), opts)
	if err != nil {
		t.Fatalf("parse:\n%v", err)
	}
	return m
}

func ids(m *Manifest) []string {
	out := make([]string, len(m.Jobs))
	for i, j := range m.Jobs {
		out[i] = j.ID
	}
	return out
}

func TestDefaultsMergeUnderInput(t *testing.T) {
	m := mustParse(t, `
model: m
defaults: {duration: 5, resolution: 720P}
jobs:
  - id: a
    input: {prompt: p, duration: 10}
`, Options{})
	j := m.Jobs[0]
	want := map[string]any{"prompt": "p", "duration": int64(10), "resolution": "720P"}
	if got := values(t, j); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("input = %v, want %v", got, want)
	}
	// The job's own value is where duration comes from; resolution comes
	// from the defaults entry.
	if got, _ := j.FieldPos("duration"); got != (Pos{"m.yaml", 6, 34}) {
		t.Errorf("duration at %v", got)
	}
	if got, _ := j.FieldPos("resolution"); got != (Pos{"m.yaml", 3, 37}) {
		t.Errorf("resolution at %v", got)
	}
	if !j.FromDefaults("resolution") || j.FromDefaults("duration") || j.FromDefaults("prompt") || j.FromDefaults("seed") {
		t.Errorf("FromDefaults: resolution %v, duration %v, prompt %v, seed %v; want only resolution",
			j.FromDefaults("resolution"), j.FromDefaults("duration"), j.FromDefaults("prompt"), j.FromDefaults("seed"))
	}
	if m.Defaults["duration"] != int64(5) {
		t.Errorf("defaults changed: %v", m.Defaults)
	}
}

func TestDerivedIDsStableUnderReordering(t *testing.T) {
	jobs := []string{
		"  - input: {prompt: a cat}\n",
		"  - input: {prompt: a dog}\n    model: other\n",
		"  - input: {prompt: a bird}\n    matrix: {seed: [1, 2, 3]}\n",
		"  - id: named\n    input: {prompt: x}\n    matrix: {seed: [1, 2], hd: [true, false]}\n",
	}
	parse := func(order []int) map[string]string { // fingerprint -> id
		src := "model: m\ndefaults: {duration: 5}\njobs:\n"
		for _, i := range order {
			src += jobs[i]
		}
		byFP := map[string]string{}
		for _, j := range mustParse(t, src, Options{}).Jobs {
			byFP[j.Fingerprint()] = j.ID
		}
		return byFP
	}
	first := parse([]int{0, 1, 2, 3})
	if len(first) != 1+1+3+4 {
		t.Fatalf("got %d jobs: %v", len(first), first)
	}
	for _, order := range [][]int{{3, 2, 1, 0}, {2, 0, 3, 1}} {
		if got := parse(order); fmt.Sprint(got) != fmt.Sprint(first) {
			t.Errorf("order %v: ids changed\n got %v\nwant %v", order, got, first)
		}
	}
	for fp, id := range first {
		if !strings.HasPrefix(id, "named.") && id != ShortID(fp) {
			t.Errorf("derived id %s is not ShortID(%s)", id, fp)
		}
	}
}

func TestMatrixIDsAndValues(t *testing.T) {
	m := mustParse(t, `
model: m
defaults: {duration: 3, seed: 0}
jobs:
  - id: tub-variants
    input: {prompt: p, seed: 99}
    matrix:
      seed: [1, 2, 3]
      duration: [5, 10]
`, Options{})
	want := []string{
		"tub-variants.seed-1.duration-5", "tub-variants.seed-1.duration-10",
		"tub-variants.seed-2.duration-5", "tub-variants.seed-2.duration-10",
		"tub-variants.seed-3.duration-5", "tub-variants.seed-3.duration-10",
	}
	if got := ids(m); !slices.Equal(got, want) {
		t.Fatalf("ids = %v, want %v", got, want)
	}
	// Matrix values win over the job's input and the defaults, and each
	// field points at the value that produced it.
	j := m.Jobs[3]
	if in := values(t, j); in["seed"] != int64(2) || in["duration"] != int64(10) {
		t.Errorf("input = %v", in)
	}
	if got, _ := j.FieldPos("duration"); got != (Pos{"m.yaml", 9, 21}) {
		t.Errorf("duration at %v", got)
	}
}

func TestMatrixValuesWithUnsafeCharactersGetDistinctValidIDs(t *testing.T) {
	m := mustParse(t, `
model: m
jobs:
  - id: x
    input: {}
    matrix:
      prompt: ["a/b", "a b", "a_b", "../../etc", "", "日本"]
`, Options{})
	seen := map[string]bool{}
	for _, id := range ids(m) {
		if !ValidID(id) || seen[id] {
			t.Errorf("bad or repeated id %q", id)
		}
		seen[id] = true
	}
	if !seen["x.prompt-a_b"] {
		t.Errorf("a safe value should be kept as written: %v", ids(m))
	}
}

func TestFingerprintIntAndFloatAgree(t *testing.T) {
	m := mustParse(t, `
model: m
jobs:
  - id: int
    input: {seed: 5, cfg: 0}
  - id: float
    input: {seed: 5.0, cfg: -0.0}
`, Options{})
	if m.Jobs[0].Fingerprint() != m.Jobs[1].Fingerprint() {
		t.Errorf("5 and 5.0 fingerprint differently: %s vs %s", m.Jobs[0].Fingerprint(), m.Jobs[1].Fingerprint())
	}
	// The input is sent as its canonical JSON, so 5.0 goes out as 5 and
	// -0.0 as 0: what the fingerprint hashes is what RunComfy receives.
	if got := string(m.Jobs[1].Input); got != `{"cfg":0,"seed":5}` {
		t.Errorf("input = %s, want the canonical {\"cfg\":0,\"seed\":5}", got)
	}
}

func TestFingerprintSameAcrossSources(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.csv", "prompt,seed\nhello,5\n")
	write(t, dir, "b.jsonl", `{"input": {"prompt": "hello", "seed": 5.0}}`+"\n")
	write(t, dir, "m.yaml", "model: m\ninclude: [a.csv]\n")
	write(t, dir, "n.yaml", "model: m\ninclude: [b.jsonl]\n")
	write(t, dir, "o.yaml", "model: m\njobs:\n  - input: {seed: 5, prompt: hello}\n")
	var fps []string
	for _, name := range []string{"m.yaml", "n.yaml", "o.yaml"} {
		m, err := Load(filepath.Join(dir, name), Options{FieldType: stubFieldType})
		if err != nil {
			t.Fatal(err)
		}
		fps = append(fps, m.Jobs[0].Fingerprint())
	}
	if fps[0] != fps[1] || fps[1] != fps[2] {
		t.Errorf("the same job fingerprints differently by source: %v", fps)
	}
	// Two identical jobs without ids in one manifest cannot both be kept.
	write(t, dir, "both.yaml", "model: m\njobs:\n  - input: {seed: 5, prompt: hello}\ninclude: [a.csv, b.jsonl]\n")
	_, err := Load(filepath.Join(dir, "both.yaml"), Options{FieldType: stubFieldType})
	if err == nil || !strings.Contains(err.Error(), "same model and input") {
		t.Errorf("want a same-input error, got %v", err)
	}
}

func TestCSVTyping(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "rows.csv", "prompt,seed,cfg,hd,tags,other\n"+
		"\"two\nlines\",5, 7.5 ,true,\"[1,2]\",42\n"+
		"empty,,,,,\n")
	write(t, dir, "m.yaml", "model: m\ndefaults: {seed: 1}\ninclude: [rows.csv]\n")
	path := filepath.Join(dir, "m.yaml")

	m, err := Load(path, Options{FieldType: stubFieldType})
	if err != nil {
		t.Fatal(err)
	}
	got := values(t, m.Jobs[0])
	want := map[string]any{"prompt": "two\nlines", "seed": int64(5), "cfg": 7.5, "hd": true, "tags": []any{int64(1), int64(2)}, "other": "42"}
	if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
		t.Errorf("typed row:\n got %#v\nwant %#v", got, want)
	}
	// Empty cells leave the field out, so the defaults show through.
	if got := values(t, m.Jobs[1]); len(got) != 2 || got["seed"] != int64(1) {
		t.Errorf("empty cells: %#v", got)
	}
	if got := m.Jobs[1].Pos; got.Line != 4 {
		t.Errorf("second row is on physical line 4, got %v", got)
	}

	m, err = Load(path, Options{}) // no schema: everything stays text
	if err != nil {
		t.Fatal(err)
	}
	if got := values(t, m.Jobs[0])["seed"]; got != "5" {
		t.Errorf("untyped seed = %#v", got)
	}

	write(t, dir, "rows.csv", "prompt,seed\n\"two\nlines\",five\n")
	_, err = Load(path, Options{FieldType: stubFieldType})
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 1 {
		t.Fatalf("want one error, got %v", err)
	}
	e := errs[0]
	if e.Line != 3 || e.Col != 8 || e.Field != "seed" || e.JobID != "#1" {
		t.Errorf("error at the wrong place: %+v", *e)
	}
}

func TestAllErrorsReportedAndSorted(t *testing.T) {
	_, err := Parse("m.yaml", []byte(`
jobs:
  - id: b/1
    input: {prompt: x}
  - id: ok
    input: 5
version: 2
`), Options{})
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want Errors, got %T", err)
	}
	want := "m.yaml:3:5: job #1: model: no model: set model on the job or at the top of the manifest\n" +
		`m.yaml:3:9: job #1: id: invalid id "b/1": use 1 to 128 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit` + "\n" +
		"m.yaml:5:5: job ok: model: no model: set model on the job or at the top of the manifest\n" +
		"m.yaml:6:12: job ok: input: must be a mapping of input fields, not a number\n" +
		"m.yaml:7:10: version: unsupported version 2; this comfybatch reads version 1"
	if err.Error() != want {
		t.Errorf("got\n%s\nwant\n%s", err, want)
	}
	var one *Error
	if !errors.As(err, &one) || one.Line != 3 {
		t.Errorf("errors.As should reach the first *Error, got %+v", one)
	}
}

func TestErrorFormatLeavesOutEmptyParts(t *testing.T) {
	for _, c := range []struct {
		e    Error
		want string
	}{
		{Error{Pos{"f", 1, 2}, "j", "input.x", "bad"}, "f:1:2: job j: input.x: bad"},
		{Error{Pos{"f", 3, 0}, "", "", "bad"}, "f:3: bad"},
		{Error{Pos{"f", 0, 0}, "", "model", "bad"}, "f: model: bad"},
		{Error{Pos{}, "#2", "", "bad"}, "job #2: bad"},
	} {
		if got := c.e.Error(); got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
	}
	es := Errors{{Pos: Pos{"b", 1, 1}, Msg: "3"}, {Pos: Pos{"a", 9, 1}, Msg: "1"}, {Pos: Pos{"a", 10, 1}, Msg: "2"}}
	if got := es.Error(); got != "a:9:1: 1\na:10:1: 2\nb:1:1: 3" {
		t.Errorf("not sorted by file, then line:\n%s", got)
	}
}

func TestValidID(t *testing.T) {
	good := []string{"a", "0", "tub-001", "A.b_c-d", "a..b", strings.Repeat("x", 128)}
	bad := []string{"", ".", "..", "../x", "a/b", `a\b`, ".hidden", "-x", "_x", "a b", "é", "a\x00", strings.Repeat("x", 129)}
	for _, id := range good {
		if !ValidID(id) {
			t.Errorf("ValidID(%q) = false", id)
		}
	}
	for _, id := range bad {
		if ValidID(id) {
			t.Errorf("ValidID(%q) = true", id)
		}
	}
	if got := ShortID("0123456789abcdef"); got != "0123456789ab" {
		t.Errorf("ShortID = %q", got)
	}
}

func TestJobsDoNotShareValues(t *testing.T) {
	m := mustParse(t, `
model: m
defaults: {loras: [{name: a}]}
jobs:
  - input: {prompt: one}
    matrix: {seed: [1, 2]}
`, Options{})
	values(t, m.Jobs[0])["loras"].([]any)[0].(map[string]any)["name"] = "changed"
	if got := values(t, m.Jobs[1])["loras"].([]any)[0].(map[string]any)["name"]; got != "a" {
		t.Errorf("changing one job changed another: %v", got)
	}
	if got := m.Defaults["loras"].([]any)[0].(map[string]any)["name"]; got != "a" {
		t.Errorf("changing one job changed the defaults: %v", got)
	}
}

func TestMaxJobs(t *testing.T) {
	src := "model: m\njobs:\n  - id: x\n    input: {}\n    matrix: {a: [1,2,3,4,5,6,7,8,9,10], b: [1,2,3,4,5,6,7,8,9,10], c: [1,2,3,4,5,6,7,8,9,10]}\n"
	_, err := Parse("m.yaml", []byte(src), Options{MaxJobs: 500})
	if err == nil || !strings.Contains(err.Error(), "more than 500 jobs") {
		t.Errorf("want a cap error, got %v", err)
	}
	if m, err := Parse("m.yaml", []byte(src), Options{}); err != nil || len(m.Jobs) != 1000 {
		t.Errorf("default cap: %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"), Options{})
	var errs Errors
	if !errors.As(err, &errs) || !strings.Contains(err.Error(), "cannot read manifest: no such file") {
		t.Errorf("got %v", err)
	}
}

func TestIncludePathsRelativeToManifest(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "sub/m.yaml", "model: m\ninclude: [../shared/rows.csv]\n")
	write(t, dir, "shared/rows.csv", "prompt\nhi\n")
	m, err := Load(filepath.Join(dir, "sub", "m.yaml"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.Jobs[0].Pos.File, filepath.Join(dir, "shared", "rows.csv"); got != want {
		t.Errorf("included job's file = %s, want %s", got, want)
	}
}

func write(t testing.TB, dir, name, data string) {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestVolumeCapStopsDefaultsTimesMatrix(t *testing.T) {
	src := `
model: m
defaults:
  a: &a [x, x, x, x, x, x, x, x, x, x]
  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
  c: [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
jobs:
  - input: {}
    matrix: {seed: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], hd: [true, false]}
`
	_, err := Parse("m.yaml", []byte(src), Options{MaxJobs: 20})
	if err == nil || !strings.Contains(err.Error(), "too much data") {
		t.Errorf("want a volume error, got %v", err)
	}
	// The same manifest is fine under the default cap: 20 jobs of 1,111 values.
	if m, err := Parse("m.yaml", []byte(src), Options{}); err != nil || len(m.Jobs) != 20 {
		t.Errorf("default cap: %v", err)
	}
}

// An id that would name the file comfybatch writes itself is refused, with a
// message that says why, wherever the job comes from.
func TestReservedID(t *testing.T) {
	for _, id := range []string{"metadata", "Metadata", "METADATA"} {
		if ValidID(id) {
			t.Errorf("ValidID(%q) = true", id)
		}
	}
	for _, id := range []string{"metadata-1", "metadata.seed-1", "meta"} {
		if !ValidID(id) {
			t.Errorf("ValidID(%q) = false", id)
		}
	}
	_, err := Parse("m.yaml", []byte("model: m/x\njobs:\n  - id: metadata\n    input: {prompt: p}\n"), Options{})
	if err == nil || !strings.Contains(err.Error(), "reserved") || !strings.Contains(err.Error(), "m.yaml:3") {
		t.Fatalf("Parse = %v, want a reserved-id error at m.yaml:3", err)
	}
}
