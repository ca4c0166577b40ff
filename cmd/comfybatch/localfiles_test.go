package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"comfybatch/runcomfy/runcomfytest"
)

// writePNG writes a w×h PNG of one colour.
func writePNG(t *testing.T, path string, w, h int, c color.RGBA) {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetRGBA(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

const folderManifest = `version: 1
model: wan-ai/wan-2-6/flash/image-to-video
defaults:
  prompt: "the frame comes alive, slow dolly forward"
  duration: 5
  resolution: 720P
include:
  - files: frames/*.png
    as: img_url
    matrix:
      seed: [1, 2]
`

// TestLocalFolderInline: a folder of 20 local PNGs × 2 seeds runs with each
// image sent inline as a data: URI, which the simulated API decodes and
// which matches the file byte for byte; the ledger keeps the path and the
// hash, never the bytes; editing one PNG changes exactly its two jobs.
func TestLocalFolderInline(t *testing.T) {
	dir := t.TempDir()
	frames := filepath.Join(dir, "frames")
	if err := os.Mkdir(frames, 0o755); err != nil {
		t.Fatal(err)
	}
	sums := map[string]string{} // file stem -> sha256
	for i := range 20 {
		name := fmt.Sprintf("f-%02d", i)
		path := filepath.Join(frames, name+".png")
		writePNG(t, path, 400, 380, color.RGBA{uint8(10 * i), 80, 160, 255})
		sums[name] = sha256File(t, path)
	}
	manifest := filepath.Join(dir, "frames.yaml")
	if err := os.WriteFile(manifest, []byte(folderManifest), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, env := serveFake(t, runcomfytest.Config{})
	r := runBinary(t, env, "run", manifest, "-q", "--rps", "1000", "-j", "16")
	if r.code != 0 {
		t.Fatalf("run exited %d:\n%s", r.code, r.stderr)
	}
	jobs := srv.Jobs()
	if len(jobs) != 40 {
		t.Fatalf("the API created %d jobs, want 40", len(jobs))
	}
	perFile := map[string][]string{} // sha256 -> seeds
	for _, j := range jobs {
		var in map[string]any
		if err := json.Unmarshal(j.Input, &in); err != nil {
			t.Fatal(err)
		}
		got := j.Inline["img_url"]
		if want := "data:image/png;sha256=" + got; in["img_url"] != want {
			t.Fatalf("img_url reached the API as %v, want a PNG data: URI (%s)", in["img_url"], want)
		}
		perFile[got] = append(perFile[got], fmt.Sprint(in["seed"]))
	}
	for name, sum := range sums {
		if seeds := perFile[sum]; len(seeds) != 2 {
			t.Errorf("%s.png: the API decoded its bytes in %d jobs (seeds %v), want 2", name, len(seeds), seeds)
		}
	}

	// The ledger keeps the path and the hash, never the bytes.
	db, err := os.ReadFile(filepath.Join(dir, "frames.ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(db, []byte("data:image")) || bytes.Contains(db, []byte("base64")) {
		t.Error("the ledger holds a data: URI")
	}
	if want := "local:frames/f-07.png#sha256=" + sums["f-07"]; !bytes.Contains(db, []byte(want)) {
		t.Errorf("the ledger does not hold %s", want)
	}

	// Editing one file makes exactly its two jobs changed.
	writePNG(t, filepath.Join(frames, "f-07.png"), 400, 380, color.RGBA{1, 2, 3, 255})
	p := runBinary(t, env, "plan", manifest, "--json", "-v")
	if p.code != 0 {
		t.Fatalf("plan exited %d:\n%s", p.code, p.stderr)
	}
	var plan planJSON
	if err := json.Unmarshal([]byte(p.stdout), &plan); err != nil {
		t.Fatal(err)
	}
	var changed []string
	for _, j := range plan.Jobs {
		if j.Change == "changed" {
			changed = append(changed, j.ID)
		}
	}
	slices.Sort(changed)
	if want := []string{"f-07.seed-1", "f-07.seed-2"}; !slices.Equal(changed, want) {
		t.Errorf("changed in plan: %v, want %v", changed, want)
	}
	if plan.Counts["unchanged"] != 38 {
		t.Errorf("unchanged = %d, want 38", plan.Counts["unchanged"])
	}
	// And the rerun submits those two only, with the new bytes.
	r = runBinary(t, env, "run", manifest, "-q", "--rps", "1000")
	if r.code != 0 {
		t.Fatalf("rerun exited %d:\n%s", r.code, r.stderr)
	}
	jobs = srv.Jobs()
	if len(jobs) != 42 {
		t.Fatalf("after the edit the API has %d jobs, want 42", len(jobs))
	}
	edited := sha256File(t, filepath.Join(frames, "f-07.png"))
	for _, j := range jobs[40:] {
		if j.Inline["img_url"] != edited {
			t.Errorf("a resubmitted job carried %s, not the edited file's bytes", j.Inline["img_url"])
		}
	}
	if strings.Contains(r.stderr, "data:") {
		t.Error("a data: URI reached the log")
	}
	// A file added to the folder is two new jobs, even for a rerun that
	// would otherwise have nothing to do.
	writePNG(t, filepath.Join(frames, "f-20.png"), 400, 380, color.RGBA{9, 9, 9, 255})
	if r = runBinary(t, env, "run", manifest, "-q", "--rps", "1000"); r.code != 0 {
		t.Fatalf("run after adding a file exited %d:\n%s", r.code, r.stderr)
	}
	if n := len(srv.Jobs()); n != 44 {
		t.Errorf("after adding a file the API has %d jobs, want 44", n)
	}
}
