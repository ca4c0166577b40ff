package manifest

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// splitSeeds are manifests written in ways a text split could misread. Each
// must either be declined by the split or read exactly as the whole document.
var splitSeeds = []string{
	"model: m\njobs:\n  - input: {prompt: a}\n  - input: {prompt: b}\n",
	"model: m\njobs:\n- input: {prompt: a}\n- input: {prompt: b}\noutput: {dir: o}\n",
	"model: m\r\njobs:\r\n  - input: {prompt: a}\r\n  - input: {prompt: b}\r\n",
	"model: m\njobs: # the list\n  # first\n  - id: a\n    input: {prompt: a}\n# aside\n  - id: b\n    input:\n      prompt: b\n\ndefaults: {seed: 1}\n",
	"model: m\njobs:\n- input: {prompt: \"a\n- b\"}\n- input: {prompt: c}\n",
	"model: m\njobs:\n  - input: {prompt: \"a\n  - b\"}\n  - input: {prompt: c}\n",
	"model: m\njobs:\n  - input: {prompt: 'a\n  - b'}\n  - input: {prompt: c}\n",
	"model: m\ndefaults: &d {seed: 1}\njobs:\n  - input: *d\n  - input: {prompt: x}\n",
	"model: m\njobs:\n  - input: &i {prompt: a}\n  - input: *i\n    id: b\n  - input: {prompt: c}\n",
	"model: \"abc\njobs:\n  - input: {prompt: x}\ndef\"\n",
	"{model: m,\njobs:\n  - input: {prompt: x}\n}\n",
	"model: m\njobs:\n  - input:\n      prompt: |\n        line\n\n        - not an entry\n  - input: {prompt: y}\n",
	"model: m\njobs:\n  -\n    input: {prompt: x}\n  - input: {prompt: y}\n",
	"model: m\njobs:\n  - input: {prompt: x}\n - input: {prompt: y}\n",
	"model: m\njobs:\n  - input: {prompt: x}\n\t- input: {prompt: y}\n",
	"model: m\njobs:\n  - input: {prompt: [a,\n  - b]}\n  - input: {prompt: y}\n",
	"model: m\njobs:\n  - input: {prompt: x}\njobs:\n  - input: {prompt: y}\n",
	"model: m\njobs:\n  - input: {prompt: x}\n---\nmodel: n\n",
	"model: m\njobs:\n  - input: {prompt: x}\n    matrix: {seed: [1, 2, 3]}\n  - id: y\n    input: {prompt: y}\n    matrix: {seed: [1, 2]}\n",
	"model: m\njobs:\n  - input: {prompt: x}\n  - input: {prompt: x}\n",
	"model: m\njobs:\n  - id: a\n    input: {prompt: x}\n  - id: a\n    input: {prompt: y}\n",
	"model: m\njobs:\n  - input: {prompt: x}\n  - input:\n      prompt: plain text\n        going on\n      seed: 2\n",
	"model: m\njobs:\n  - input: {prompt: \"x\"}\n  - input: {prompt: \"y\\\n  - z\"}\n",
	"jobs:\n  - model: m\n    input: {prompt: x}\n",
	"jobs:\n  - model: m\n    input: {prompt: x}\n...\n",
	"model: m\njobs:\n  - ? input\n    : {prompt: x}\n",
	// An alias after the list names an anchor defined before it and again
	// inside it: YAML means the later one.
	"output: {dir: &d out1}\nmodel: m\njobs:\n  - input: {prompt: &d out2}\ndefaults: {folder: *d}\n",
	"model: m\njobs:\n  - input: {prompt: &p x}\n  - input: {prompt: y}\ndefaults: {note: *p}\n",
	// Line breaks other than \n move every later line in YAML's count.
	"model: m\njobs:\n  - input: {prompt: \"a\rb\"}\n  - input: {prompt: c}\ndefaults: {seed: 1}\n",
	"model: m\njobs:\n  - input: {prompt: \"a\u0085b\"}\n  - input: {prompt: c}\ndefaults: {seed: 1}\n",
	"model: m\njobs:\n  - input: {prompt: \"a\u2028b\"}\n  - input: {prompt: c}\ndefaults: {seed: 1}\n",
	"model: m\njobs:\n  - input: {prompt: \"a\u2029b\"}\n  - input: {prompt: c}\ndefaults: {seed: 1}\n",
	"model: m\njobs:\n  - input: {prompt: a}\r...\n  - input: {prompt: c}\n",
	"\ufeffmodel: m\njobs:\n  - input: {prompt: x}\n  - input: {prompt: y}\ndefaults: {seed: 1}\n",
	"\ufeffjobs:\n  - {model: m, input: {prompt: x}}\n",
	"---\nmodel: m\njobs:\n  - input: {prompt: x}\n  - input: {prompt: y}\n",
	"--- # the batch\nmodel: m\njobs:\n- input: {prompt: x}\n...\n",
	"---\n---\nmodel: m\njobs:\n  - input: {prompt: x}\n",
	"--- {model: m}\njobs:\n  - input: {prompt: x}\n",
	"---\njobs:\n  - {model: m, input: {prompt: x}}\n---\njobs:\n  - {model: m, input: {prompt: y}}\n",
}

// checkSplit parses data both ways and fails when the fast parse reads it
// differently from the whole document. It reports whether the fast parse
// succeeded with the jobs list split.
func checkSplit(t *testing.T, file string, data []byte, per int) bool {
	t.Helper()
	opts := Options{FieldType: stubFieldType, MaxJobs: 2000}
	split, ok := parseFast(file, memory(data), opts, per)
	if !ok {
		return false
	}
	whole, err := parseWhole(file, data, opts)
	if err != nil {
		t.Fatalf("the split read a manifest the whole document rejects:\n%s\n%v", data, err)
	}
	if !reflect.DeepEqual(split, whole) {
		t.Fatalf("the fast parse reads the manifest differently:\n%s\n--- fast\n%s--- whole\n%s", data, dump(split), dump(whole))
	}
	_, used, _ := splitJobs(memory(data), per)
	return used
}

func TestSplitReadsAsWhole(t *testing.T) {
	used := 0
	for _, src := range splitSeeds {
		for _, per := range []int{1, 2, groupEntries} {
			if checkSplit(t, "m.yaml", []byte(src), per) {
				used++
			}
		}
	}
	paths, _ := filepath.Glob(filepath.Join(manifestDir, "ok_*.yaml"))
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, per := range []int{1, 3} {
			if checkSplit(t, path, data, per) {
				used++
			}
		}
	}
	// Most of these must really take the split path, or this proves nothing.
	if used < 40 {
		t.Errorf("the split was used %d times; want at least 40", used)
	}
}

// TestSplitDeclines pins the cases the split must leave to the whole parse.
func TestSplitDeclines(t *testing.T) {
	for _, src := range []string{
		"{model: m,\njobs:\n  - input: {prompt: x}\n}\n",
		"model: m\njobs: [{input: {prompt: x}}]\n",
		"model: m\njobs:\n  - input: {prompt: x}\njobs:\n  - input: {prompt: y}\n",
		"model: m\njobs:\n  - input: {prompt: x}\n - input: {prompt: y}\n",
		"model: m\n\"jobs\":\n  - input: {prompt: x}\n",
	} {
		if _, ok, _ := splitJobs(memory(src), groupEntries); ok {
			t.Errorf("split accepted:\n%s", src)
		}
	}
	for _, src := range []string{
		"model: m\njobs:\n  - input: {prompt: \"a\rb\"}\n",
		"model: m\njobs:\n  - input: {prompt: \"a\u2028b\"}\n",
	} {
		if _, ok, _ := splitJobs(memory(src), groupEntries); ok {
			t.Errorf("split accepted a line break it does not count:\n%q", src)
		}
	}
	// A group that does not stand alone is found out when it is parsed.
	for _, src := range []string{
		"model: m\njobs:\n- input: {prompt: \"a\n- b\"}\n- input: {prompt: c}\n",
		"model: m\ndefaults: &d {seed: 1}\njobs:\n  - input: *d\n",
		"model: \"abc\njobs:\n  - input: {prompt: x}\ndef\"\n",
		"output: {dir: &d out1}\nmodel: m\njobs:\n  - input: {prompt: &d out2}\ndefaults: {folder: *d}\n",
	} {
		if _, ok := parseFast("m.yaml", memory(src), Options{}, 1); ok {
			t.Errorf("split parse accepted:\n%s", src)
		}
	}
}

// TestSplitKeepsPlaces checks that lines after the list and in later groups
// keep their numbers, in jobs and in errors.
func TestSplitKeepsPlaces(t *testing.T) {
	src := "model: m\njobs:\n  - id: a\n    input: {prompt: a}\n\n  - id: b\n    input:\n      prompt: b\n  - id: c\n    input: {prompt: c, seed: 3}\ndefaults: {seed: 1}\n"
	if _, ok, _ := splitJobs(memory(src), 1); !ok {
		t.Fatal("split not used")
	}
	m, ok := parseFast("m.yaml", memory(src), Options{}, 1)
	if !ok {
		t.Fatal("fast parse failed")
	}
	want := []Pos{{"m.yaml", 3, 5}, {"m.yaml", 6, 5}, {"m.yaml", 9, 5}}
	for i, j := range m.Jobs {
		if j.Pos != want[i] {
			t.Errorf("job %s at %v, want %v", j.ID, j.Pos, want[i])
		}
	}
	if at, _ := m.Jobs[1].FieldPos("prompt"); at != (Pos{"m.yaml", 8, 15}) {
		t.Errorf("b's prompt at %v", at)
	}
	if at, _ := m.Jobs[0].FieldPos("seed"); at != (Pos{"m.yaml", 11, 18}) {
		t.Errorf("a's seed (a default) at %v", at)
	}
	// An error in a later group is reported at its line in the file.
	bad := strings.Replace(src, "seed: 3", "seed: [3", 1)
	_, err := Parse("m.yaml", []byte(bad), Options{})
	if err == nil || !strings.Contains(err.Error(), "m.yaml:10") {
		t.Errorf("want an error on line 10, got %v", err)
	}
}

// FuzzSplit looks for a manifest that the split reads differently from the
// whole document: go test -run XXX -fuzz FuzzSplit ./manifest
func FuzzSplit(f *testing.F) {
	for _, s := range splitSeeds {
		f.Add([]byte(s), uint8(1))
	}
	paths, _ := filepath.Glob(filepath.Join(manifestDir, "*.yaml"))
	for _, path := range paths {
		if data, err := os.ReadFile(path); err == nil {
			f.Add(data, uint8(2))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, per uint8) {
		checkSplit(t, "m.yaml", data, int(per%4)+1)
	})
}

func TestJobLookup(t *testing.T) {
	m := mustParse(t, "model: m\njobs:\n  - {id: b, input: {prompt: b}}\n  - {id: a, input: {prompt: a}}\n  - {id: c, input: {prompt: c}}\n", Options{})
	for _, id := range []string{"a", "b", "c"} {
		j, ok := m.Job(id)
		if !ok || j.ID != id || string(j.Input) != `{"prompt":"`+id+`"}` {
			t.Errorf("Job(%q) = %v, %v", id, j, ok)
		}
	}
	for _, id := range []string{"", "d", "0", "bb"} {
		if j, ok := m.Job(id); ok {
			t.Errorf("Job(%q) found %v", id, j.ID)
		}
	}
	// An id given twice is found however the manifest is read.
	dup := "model: m\njobs:\n  - {id: a, input: {prompt: x}}\n  - {id: b, input: {prompt: y}}\n  - {id: a, input: {prompt: z}}\n"
	if _, ok := parseFast("m.yaml", memory(dup), Options{}, 1); ok {
		t.Error("the fast parse let a duplicate id through")
	}
	if _, err := Parse("m.yaml", []byte(dup), Options{}); err == nil || !strings.Contains(err.Error(), "m.yaml:5") || !strings.Contains(err.Error(), "duplicate id (first used at m.yaml:3") {
		t.Errorf("want the duplicate reported at line 5, got %v", err)
	}
}

// TestLoadStreamsAsParse checks that a manifest read from its file, a group
// at a time, is the one Parse makes from the same bytes, including a line
// longer than the read buffer.
func TestLoadStreamsAsParse(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("x", 150_000)
	var big strings.Builder
	big.WriteString("model: m\ndefaults: {seed: 1}\njobs:\n")
	for i := range 1200 {
		fmt.Fprintf(&big, "  - id: j%d\n    input: {prompt: \"take %d\"}\n", i, i)
		if i == 700 {
			fmt.Fprintf(&big, "  - id: long\n    input: {prompt: %s}\n", long)
		}
	}
	big.WriteString("output: {dir: out}\n")
	cases := append([]string{big.String()}, splitSeeds...)
	split := 0
	for i, src := range cases {
		path := filepath.Join(dir, fmt.Sprintf("m%d.yaml", i))
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		want, werr := Parse(path, []byte(src), Options{})
		got, gerr := Load(path, Options{})
		if !reflect.DeepEqual(got, want) || fmt.Sprint(gerr) != fmt.Sprint(werr) {
			t.Fatalf("Load and Parse differ on %s:\n%s\nLoad: %v\nParse: %v", path, src, gerr, werr)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok, err := splitJobs(file{f: f, n: len(src)}, groupEntries); err == nil && ok && gerr == nil {
			split++
		}
		f.Close()
	}
	if split < 5 {
		t.Errorf("the file was read a group at a time %d times; want at least 5", split)
	}
	m, err := Load(filepath.Join(dir, "m0.yaml"), Options{})
	if err != nil || len(m.Jobs) != 1201 {
		t.Fatalf("big manifest: %d jobs, %v", len(m.Jobs), err)
	}
	if j, ok := m.Job("long"); !ok || !strings.Contains(string(j.Input), long) {
		t.Errorf("the long line's job lost its prompt")
	}
}

// changing is a source whose text changes after the first read, as a file
// edited while it is loaded.
type changing struct {
	first, then memory
	reads       int
}

func (c *changing) lines(fn func([]byte) bool) error {
	c.reads++
	if c.reads == 1 {
		return c.first.lines(fn)
	}
	return c.then.lines(fn)
}
func (c *changing) bytes() ([]byte, error) { return c.then, nil }
func (c *changing) size() int              { return len(c.then) }

func TestSplitNoticesAChangedFile(t *testing.T) {
	a := "model: m\njobs:\n  - id: a\n    input: {prompt: one}\n"
	b := "model: m\njobs:\n  - id: a\n    input: {prompt: two}\n"
	if _, ok := parseFast("m.yaml", &changing{first: memory(a), then: memory(b)}, Options{}, 1); ok {
		t.Error("a list that changed between reads was accepted")
	}
	m, err := parse("m.yaml", &changing{first: memory(a), then: memory(b)}, Options{})
	if err != nil || len(m.Jobs) != 1 || string(m.Jobs[0].Input) != `{"prompt":"two"}` {
		t.Errorf("want the file as it now reads, got %v, %v", m, err)
	}
}
