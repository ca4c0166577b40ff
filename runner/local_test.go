package runner

import (
	"bytes"
	"image"
	"image/png"
	"slices"
	"strings"
	"testing"

	"comfybatch/media"
)

// TestValidateLocal: local files are judged by the media rules at the
// field that names them, once per file however many jobs use it, and a
// job whose body with its files inline would pass the limit is refused.
func TestValidateLocal(t *testing.T) {
	s := schemas(t)
	pngOf := func(w, h int) string {
		return string(encode(t, w, h, func(b *bytes.Buffer, i image.Image) error { return png.Encode(b, i) }))
	}
	m := load(t, s, map[string]string{
		"m.yaml": `model: wan-ai/wan-2-6/flash/image-to-video
jobs:
  - id: small
    input: {prompt: p, img_url: small.png}
    matrix: {seed: [1, 2]}
  - id: good
    input: {prompt: p, img_url: good.png}
  - id: notimage
    input: {prompt: p, img_url: notes.png}
`,
		"small.png": pngOf(100, 500),
		"good.png":  pngOf(800, 600),
		"notes.png": "hello",
	})
	err := ValidateLocal(m, media.DefaultRules(), 0)
	got := lines(err)
	wantLines := []string{
		"m.yaml:4:33: job small.seed-1: input.img_url: local file small.png: dimensions: png is 100x500 px; width and height must each be over 360 and under 2000 (the same for 1 more job)",
		"m.yaml:9:33: job notimage: input.img_url: local file notes.png: format: not a recognised image; accepted formats: jpeg, png, bmp, webp",
	}
	if !slices.Equal(got, wantLines) {
		t.Errorf("problems:\n%q\nwant:\n%q", got, wantLines)
	}

	// The body limit: good.png inline is over 100 bytes.
	err = ValidateLocal(m, media.DefaultRules(), 100)
	found := false
	for _, l := range lines(err) {
		if strings.HasPrefix(l, "m.yaml:6:5: job good: input: with its local files inline as data: URIs the request body would be ") && strings.HasSuffix(l, " bytes, over the limit of 100 bytes; use smaller files, or URLs") {
			found = true
		}
	}
	if !found {
		t.Errorf("no body-limit problem for good in:\n%v", err)
	}
}
