package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"comfybatch/manifest"
	"comfybatch/media"
	"comfybatch/runcomfy"
)

func schemas(tb testing.TB) *runcomfy.Schemas {
	tb.Helper()
	s, err := runcomfy.BuiltinSchemas()
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// load writes files into a temp dir and loads "m.yaml" from there, with CSV
// cells typed by the built-in schemas. Error positions name the files by
// their base names (the test runs in that dir).
func load(t *testing.T, s *runcomfy.Schemas, files map[string]string) *manifest.Manifest {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)
	m, err := manifest.Load("m.yaml", manifest.Options{FieldType: s.FieldType})
	if err != nil {
		t.Fatalf("manifest: %v", err)
	}
	return m
}

func lines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

func TestValidateReportsEveryProblemAtItsValue(t *testing.T) {
	s := schemas(t)
	m := load(t, s, map[string]string{
		"m.yaml": `model: wan-ai/wan-2-6/flash/image-to-video
defaults:
  img_url: https://example.com/a.png
jobs:
  - id: ok
    input: {prompt: fine, resolution: 720P}
  - id: many
    input:
      resolution: 1080P
      seed: -1
      img_url: http://example.com/b.png
      duration: "5"
  - id: grid
    input: {prompt: p, resolution: 720P}
    matrix:
      duration: [5, 7]
      seed: [1, 2]
include:
  - rows.csv
`,
		"rows.csv": "id,prompt,duration,resolution\nr1,hello,10,720P\nr2,hi,15,720p\n",
	})
	_, err := Validate(m, s)
	var errs manifest.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want manifest.Errors, got %v", err)
	}
	want := []string{
		`m.yaml:7:5: job many: input.prompt: required: prompt is required`,
		`m.yaml:10:13: job many: input.seed: minimum: -1 is below the minimum 0`,
		`m.yaml:11:16: job many: input.img_url: https: "http://example.com/b.png": http is allowed only for loopback hosts; use https`,
		`m.yaml:12:17: job many: input.duration: type: "5" is a string, want integer`,
		// The matrix value 7 is one mistake shared by two combinations.
		`m.yaml:16:21: job grid.duration-7.seed-1: input.duration: enum: 7 is not one of 5, 10, 15 (the same for 1 more job)`,
		`rows.csv:3:10: job r2: resolution: enum: "720p" is not one of "720P", "1080P"`,
	}
	if got := lines(err); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("report:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestValidateDefaultsReportedOnceForAllJobs(t *testing.T) {
	s := schemas(t)
	var y strings.Builder
	y.WriteString("model: wan-ai/wan-2-6/flash/image-to-video\ndefaults:\n  shot_type: double\njobs:\n")
	for i := range 1000 {
		fmt.Fprintf(&y, "  - {id: j%d, input: {prompt: p, img_url: \"https://example.com/%d.png\"}}\n", i, i)
	}
	m := load(t, s, map[string]string{"m.yaml": y.String()})
	_, err := Validate(m, s)
	want := `m.yaml:3:14: job j0: defaults.shot_type: enum: "double" is not one of "multi", "single" (the same for 999 more jobs)`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
}

// TestValidateParallelKeepsJobOrder: with enough jobs to use every worker,
// the report is the same, in file order, on every call.
func TestValidateParallelKeepsJobOrder(t *testing.T) {
	s := schemas(t)
	var y strings.Builder
	var want []string
	y.WriteString("model: wan-ai/wan-2-6/flash/image-to-video\njobs:\n")
	for i := range 3000 {
		seed := i
		if i%301 == 0 {
			seed = -i - 1
		}
		line := fmt.Sprintf("  - {id: j%d, input: {prompt: p, img_url: https://x.org/a.png, seed: %d}}", i, seed)
		if seed < 0 {
			col := strings.Index(line, "seed: ") + len("seed: ") + 1
			want = append(want, fmt.Sprintf("m.yaml:%d:%d: job j%d: input.seed: minimum: %d is below the minimum 0", i+3, col, i, seed))
		}
		y.WriteString(line + "\n")
	}
	m := load(t, s, map[string]string{"m.yaml": y.String()})
	for range 3 {
		_, err := Validate(m, s)
		if got := strings.Join(lines(err), "\n"); got != strings.Join(want, "\n") {
			t.Fatalf("report:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
		}
	}
}

func TestValidateWarnsOncePerModelWithoutSchema(t *testing.T) {
	s := schemas(t)
	m := load(t, s, map[string]string{"m.yaml": `model: acme/new-model
jobs:
  - {id: a, input: {anything: 1}}
  - {id: b, input: {seed: 99999999999}}
  - {id: c, model: acme/other, input: {x: 1}}
  - {id: d, model: wan-ai/wan-2-5/image-to-video, input: {prompt: p, img_url: "https://e.com/a.png"}}
`})
	warnings, err := Validate(m, s)
	want := []string{
		"no input schema for acme/new-model (2 jobs): checked only RunComfy's general rules (prompt length, seed range, https URLs), not field names, types or enums; add one with --schema acme/new-model=PATH",
		"no input schema for acme/other (1 job): checked only RunComfy's general rules (prompt length, seed range, https URLs), not field names, types or enums; add one with --schema acme/other=PATH",
	}
	if strings.Join(warnings, "\n") != strings.Join(want, "\n") {
		t.Fatalf("warnings:\n%s", strings.Join(warnings, "\n"))
	}
	// RunComfy's own rules still hold for a model without a schema.
	if err == nil || err.Error() != "m.yaml:4:27: job b: input.seed: seed-range: 99999999999 is outside 0..2147483647" {
		t.Fatalf("got %v", err)
	}
}

func TestValidateCleanManifest(t *testing.T) {
	s := schemas(t)
	m := load(t, s, map[string]string{"m.yaml": `model: wan-ai/wan-2-6/flash/image-to-video
jobs:
  - {id: a, input: {prompt: p, img_url: "https://e.com/a.png", duration: 10, seed: 0}}
`})
	warnings, err := Validate(m, s)
	if err != nil || len(warnings) != 0 {
		t.Fatalf("warnings %q, err %v", warnings, err)
	}
}

func encode(t *testing.T, w, h int, enc func(*bytes.Buffer, image.Image) error) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := enc(&b, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestValidateMedia: each distinct URL is fetched once, and each problem is
// reported at every field that uses the URL.
func TestValidateMedia(t *testing.T) {
	files := map[string][]byte{
		"/good.png":  encode(t, 800, 600, func(b *bytes.Buffer, i image.Image) error { return png.Encode(b, i) }),
		"/small.jpg": encode(t, 300, 300, func(b *bytes.Buffer, i image.Image) error { return jpeg.Encode(b, i, nil) }),
	}
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	defer srv.Close()
	s := schemas(t)
	m := load(t, s, map[string]string{"m.yaml": fmt.Sprintf(`model: wan-ai/wan-2-6/flash/image-to-video
jobs:
  - {id: a, input: {prompt: p, img_url: "%[1]s/good.png"}}
  - {id: b, input: {prompt: p, img_url: "%[1]s/small.jpg"}}
  - {id: c, input: {prompt: p, img_url: "%[1]s/small.jpg"}}
  - {id: d, input: {prompt: p, img_url: "%[1]s/gone.png"}}
`, srv.URL)})
	err := ValidateMedia(context.Background(), m, &media.Checker{})
	want := []string{
		fmt.Sprintf(`m.yaml:4:41: job b: input.img_url: media dimensions: %s/small.jpg: jpeg is 300x300 px; width and height must each be over 360 and under 2000`, srv.URL),
		fmt.Sprintf(`m.yaml:5:41: job c: input.img_url: media dimensions: %s/small.jpg: jpeg is 300x300 px; width and height must each be over 360 and under 2000`, srv.URL),
		fmt.Sprintf(`m.yaml:6:41: job d: input.img_url: media fetch: %s/gone.png: answered HTTP 404 Not Found`, srv.URL),
	}
	if got := strings.Join(lines(err), "\n"); got != strings.Join(want, "\n") {
		t.Fatalf("report:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	if n := hits.Load(); n != 3 {
		t.Fatalf("%d fetches, want 3 (one per distinct URL)", n)
	}
}

// BenchmarkLoadAndValidate100k parses and validates a manifest of 100,000
// jobs: 2,000 matrix jobs of 25 combinations each, and a 50,000-row CSV
// include, every one valid for the seed model's schema.
func BenchmarkLoadAndValidate100k(b *testing.B) {
	dir := b.TempDir()
	var y strings.Builder
	y.WriteString("version: 1\nmodel: wan-ai/wan-2-6/flash/image-to-video\ndefaults:\n  resolution: 720P\n  shot_type: single\njobs:\n")
	for i := range 2000 {
		fmt.Fprintf(&y, "  - id: clip-%d\n    input:\n      prompt: \"Scene %d: a slow pan across a harbour at dawn\"\n      img_url: https://example.com/img/%d.png\n      duration: 5\n    matrix:\n      seed: [1, 2, 3, 4, 5]\n      negative_prompt: [blur, noise, text, watermark, low quality]\n", i, i, i)
	}
	y.WriteString("include:\n  - rows.csv\n")
	var c strings.Builder
	c.WriteString("id,prompt,img_url,seed,duration\n")
	for i := range 50000 {
		fmt.Fprintf(&c, "row-%d,\"Row %d, a cat on a windowsill\",https://example.com/row/%d.png,%d,5\n", i, i, i, i)
	}
	path := filepath.Join(dir, "m.yaml")
	for name, body := range map[string]string{path: y.String(), filepath.Join(dir, "rows.csv"): c.String()} {
		if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	s := schemas(b)
	b.ReportAllocs()
	for b.Loop() {
		m, err := manifest.Load(path, manifest.Options{FieldType: s.FieldType})
		if err != nil {
			b.Fatal(err)
		}
		if len(m.Jobs) != 100_000 {
			b.Fatalf("got %d jobs", len(m.Jobs))
		}
		if _, err := Validate(m, s); err != nil {
			b.Fatal(err)
		}
	}
}

// TestValidateWarnsOfUnlistedFields: a field the model's schema does not
// list (a typo, most likely) is sent as written, so it gets one warning per
// field, naming where it is first written and how many jobs carry it.
func TestValidateWarnsOfUnlistedFields(t *testing.T) {
	s := schemas(t)
	if err := s.Add("strict/model", []byte(`{"type": "object", "properties": {"prompt": {"type": "string"}}, "additionalProperties": false}`)); err != nil {
		t.Fatal(err)
	}
	var y strings.Builder
	y.WriteString("model: wan-ai/wan-2-6/flash/image-to-video\ndefaults:\n  shot_typ: single\njobs:\n")
	for i := range 600 {
		fmt.Fprintf(&y, "  - {id: j%d, input: {prompt: p, img_url: \"https://example.com/%d.png\", sead: %d}}\n", i, i, i)
	}
	y.WriteString("  - {id: other, model: no/schema, input: {prompt: p, anything: 1}}\n")
	y.WriteString("  - {id: strict, model: strict/model, input: {prompt: p, extra: 1}}\n")
	m := load(t, s, map[string]string{"m.yaml": y.String()})
	warnings, err := Validate(m, s)
	want := []string{
		"m.yaml:3:13: defaults.shot_typ is not a field of wan-ai/wan-2-6/flash/image-to-video's input schema (600 jobs)",
		"m.yaml:5:77: input.sead is not a field of wan-ai/wan-2-6/flash/image-to-video's input schema (600 jobs)",
	}
	var short []string
	for _, w := range warnings {
		if i := strings.Index(w, ": it is sent as written"); i >= 0 {
			short = append(short, w[:i])
		}
	}
	if !slices.Equal(short, want) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(short, "\n"), strings.Join(want, "\n"))
	}
	// The strict schema speaks for itself: its extra field is an error.
	if err == nil || !strings.Contains(err.Error(), "job strict") || strings.Contains(err.Error(), "job other") {
		t.Errorf("want an error for the strict model's extra field only, got %v", err)
	}
}

// TestModelTypo: the rule that tells a misspelt model id (an error) from a
// model comfybatch has no schema for (allowed, with a warning).
func TestModelTypo(t *testing.T) {
	known := []string{"wan-ai/wan-2-5/image-to-video", "wan-ai/wan-2-6/flash/image-to-video", "wan-ai/wan-2-6/image-to-video"}
	for _, c := range []struct{ id, want string }{
		{"wan-ai/wan-2-6/flash/image-to-vide", "wan-ai/wan-2-6/flash/image-to-video"},   // a letter dropped
		{"wan-ai/wan-2-6/flash/imgae-to-video", "wan-ai/wan-2-6/flash/image-to-video"},  // two swapped
		{"WAN-AI/Wan-2-6/Image-To-Video", "wan-ai/wan-2-6/image-to-video"},              // case
		{"wan-ai/wan-2-6-image-to-video", "wan-ai/wan-2-6/image-to-video"},              // a dash for a slash
		{"wan-ai/wan_2_6/flash/image_to_video", "wan-ai/wan-2-6/flash/image-to-video"},  // four joins, only joins
		{"wan-ai/wan-2-6/flash/image-to-video/", "wan-ai/wan-2-6/flash/image-to-video"}, // a trailing slash
		{"wan-ai/wan-2-2/image-to-video", ""},                                           // another version: a digit differs
		{"wan-ai/wan-2-6/flash/text-to-video", ""},                                      // another model: five edits
		{"wan-ai/wan-2-6/image-to-video", ""},                                           // known: not a typo
		{"acme/brand-new-model", ""},
		{"", ""},
	} {
		got, ok := ModelTypo(c.id, known)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("ModelTypo(%q) = %q, %v; want %q", c.id, got, ok, c.want)
		}
	}
}
