package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// folderOf writes files (name -> content) under a fresh folder and the
// manifest text beside them, and returns the manifest's path.
func folderOf(t *testing.T, manifest string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "m.yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func sumOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestFolderInclude(t *testing.T) {
	path := folderOf(t, `model: m/x
defaults: {prompt: p, duration: 5}
include:
  - files: frames/*.png
    as: img_url
    input: {duration: 10}
    matrix:
      seed: [1, 2]
`, map[string]string{"frames/b 2.png": "B", "frames/a.png": "A", "frames/skip.txt": "x"})
	m, err := Load(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, j := range m.Jobs {
		got = append(got, j.ID+" "+string(j.Input))
	}
	want := []string{
		`a.seed-1 {"duration":10,"img_url":"local:frames/a.png#sha256=` + sumOf("A") + `","prompt":"p","seed":1}`,
		`a.seed-2 {"duration":10,"img_url":"local:frames/a.png#sha256=` + sumOf("A") + `","prompt":"p","seed":2}`,
		`b-2.seed-1 {"duration":10,"img_url":"local:frames/b 2.png#sha256=` + sumOf("B") + `","prompt":"p","seed":1}`,
		`b-2.seed-2 {"duration":10,"img_url":"local:frames/b 2.png#sha256=` + sumOf("B") + `","prompt":"p","seed":2}`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("jobs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(m.Files) != 2 || len(m.Globs) != 1 {
		t.Errorf("Files %v, Globs %v: want the two images and the pattern", m.Files, m.Globs)
	}
}

// TestLocalPaths: a media URL field may name a file relative to the
// manifest, in a job, the defaults, a matrix or a list; a file that cannot
// be read is an error at its value.
func TestLocalPaths(t *testing.T) {
	path := folderOf(t, `model: m/x
defaults: {audio_url: music/a.mp3}
jobs:
  - id: one
    input: {prompt: p, img_url: "pics/x.png", image_urls: [pics/x.png, "https://example.com/y.png"]}
  - id: two
    input: {prompt: p, img_url: https://example.com/z.png}
`, map[string]string{"pics/x.png": "X", "music/a.mp3": "M"})
	m, err := Load(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	one, _ := m.Job("one")
	x, a := "local:pics/x.png#sha256="+sumOf("X"), "local:music/a.mp3#sha256="+sumOf("M")
	want := `{"audio_url":"` + a + `","image_urls":["` + x + `","https://example.com/y.png"],"img_url":"` + x + `","prompt":"p"}`
	if string(one.Input) != want {
		t.Errorf("one: %s\nwant %s", one.Input, want)
	}
	two, _ := m.Job("two")
	if !strings.Contains(string(two.Input), `"img_url":"https://example.com/z.png"`) {
		t.Errorf("two: a URL must stay as written: %s", two.Input)
	}

	// CSV cells and JSONL lines too, relative to the manifest.
	path = folderOf(t, "model: m/x\ninclude: [rows/a.csv, rows/b.jsonl]\n", map[string]string{
		"pics/x.png": "X", "rows/a.csv": "id,prompt,img_url\nc1,p,pics/x.png\n",
		"rows/b.jsonl": `{"id":"j1","input":{"prompt":"p","img_url":"pics/x.png"}}` + "\n"})
	if m, err = Load(path, Options{}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"c1", "j1"} {
		if j, ok := m.Job(id); !ok || !strings.Contains(string(j.Input), `"img_url":"`+x+`"`) {
			t.Errorf("%s: %v, want img_url %s", id, j, x)
		}
	}

	bad := []struct{ name, manifest, want string }{
		{"missing file", "model: m/x\njobs:\n  - id: j\n    input: {prompt: p, img_url: nope.png}\n",
			"m.yaml:4:33: job j: input.img_url: nope.png is neither a URL nor a readable local file (no such file or directory; local files are read relative to the manifest's folder)"},
		{"missing file in defaults", "model: m/x\ndefaults:\n  img_url: gone.png\njobs:\n  - id: j\n    input: {prompt: p}\n",
			"m.yaml:3:12: job j: defaults.img_url: gone.png is neither a URL"},
		{"no match", "model: m/x\ninclude:\n  - files: none/*.png\n    as: img_url\n",
			"m.yaml:3:12: job include #1: files: none/*.png matches no file in"},
		{"no as", "model: m/x\ninclude:\n  - files: pics/*.png\n",
			"m.yaml:3:5: job include #1: as: missing: name the input field each file goes in"},
		{"as in input", "model: m/x\ninclude:\n  - files: pics/*.png\n    as: img_url\n    input: {img_url: x}\n",
			"m.yaml:5:22: job include #1: input.img_url: is the field the files go in (as: img_url); remove it from input"},
		{"unknown key", "model: m/x\ninclude:\n  - files: pics/*.png\n    as: img_url\n    glob: x\n",
			"m.yaml:5:5: job include #1: glob: unknown key; expected files, as, model, input or matrix"},
		{"absolute", "model: m/x\ninclude:\n  - files: /pics/*.png\n    as: img_url\n",
			"m.yaml:3:12: job include #1: files: /pics/*.png: use a pattern relative to the manifest"},
		{"same id twice", "model: m/x\ninclude:\n  - files: pics/*.png\n    as: img_url\n  - files: pics/*.png\n    as: img_url\n",
			"duplicate id"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			path := folderOf(t, tt.manifest, map[string]string{"pics/x.png": "X"})
			t.Chdir(filepath.Dir(path))
			_, err := Load("m.yaml", Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error:\n%v\nwant it to hold:\n%s", err, tt.want)
			}
		})
	}
}
