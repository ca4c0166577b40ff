package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
)

// mediaServer serves small real files and counts requests per path.
func mediaServer(t *testing.T) (*httptest.Server, func(path string) int) {
	t.Helper()
	encode := func(w, h int, enc func(*bytes.Buffer, image.Image) error) []byte {
		var b bytes.Buffer
		if err := enc(&b, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	pngOf := func(b *bytes.Buffer, i image.Image) error { return png.Encode(b, i) }
	files := map[string][]byte{
		"/good.png":     encode(800, 600, pngOf),
		"/png-as.jpg":   encode(800, 600, pngOf), // judged by its bytes: a PNG is fine
		"/huge.png":     encode(2048, 1024, pngOf),
		"/small.jpg":    encode(300, 300, func(b *bytes.Buffer, i image.Image) error { return jpeg.Encode(b, i, nil) }),
		"/short.wav":    wav(2),
		"/ok.wav":       wav(5),
		"/not-an-image": []byte("<html>hello</html>"),
	}
	var mu sync.Mutex
	hits := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits[r.URL.Path]++
		mu.Unlock()
		if r.Header.Get("Authorization") != "" {
			t.Errorf("a media fetch carried a token")
		}
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv, func(p string) int { mu.Lock(); defer mu.Unlock(); return hits[p] }
}

// wav is a silent 8 kHz mono 16-bit PCM WAV file of the given seconds.
func wav(seconds int) []byte {
	data := 8000 * 2 * seconds
	var b bytes.Buffer
	le := binary.LittleEndian
	b.WriteString("RIFF")
	b.Write(le.AppendUint32(nil, uint32(36+data)))
	b.WriteString("WAVEfmt ")
	b.Write(le.AppendUint32(nil, 16))
	b.Write(le.AppendUint16(nil, 1)) // PCM
	b.Write(le.AppendUint16(nil, 1)) // mono
	b.Write(le.AppendUint32(nil, 8000))
	b.Write(le.AppendUint32(nil, 8000*2))
	b.Write(le.AppendUint16(nil, 2))
	b.Write(le.AppendUint16(nil, 16))
	b.WriteString("data")
	b.Write(le.AppendUint32(nil, uint32(data)))
	b.Write(make([]byte, data))
	return b.Bytes()
}

// TestValidateMedia: every distinct URL is fetched once, without a token,
// and each problem is reported at every job field that uses it, together
// with the schema problems, in one report.
func TestValidateMedia(t *testing.T) {
	srv, hits := mediaServer(t)
	t.Chdir(t.TempDir())
	manifest := strings.ReplaceAll(`model: wan-ai/wan-2-6/flash/image-to-video
defaults:
  img_url: BASE/good.png
jobs:
  - {id: good, input: {prompt: p, audio_url: BASE/ok.wav}}
  - {id: renamed, input: {prompt: p, img_url: BASE/png-as.jpg}}
  - {id: huge, input: {prompt: p, img_url: BASE/huge.png}}
  - {id: small-1, input: {prompt: p, img_url: BASE/small.jpg}}
  - {id: small-2, input: {prompt: p, seed: -1, img_url: BASE/small.jpg}}
  - {id: short, input: {prompt: p, audio_url: BASE/short.wav}}
  - {id: html, input: {prompt: p, img_url: BASE/not-an-image}}
  - {id: gone, input: {prompt: p, img_url: BASE/gone.png}}
`, "BASE", srv.URL)
	os.WriteFile("jobs.yaml", []byte(manifest), 0o644)

	r := runMain(t, nil, "validate", "jobs.yaml", "--media")
	if r.code != 2 {
		t.Fatalf("exit %d, want 2:\n%s", r.code, r.stderr)
	}
	got := strings.ReplaceAll(r.stderr, srv.URL, "BASE")
	want := `error: jobs.yaml: 7 problems:
  jobs.yaml:7:44: job huge: input.img_url: media dimensions: BASE/huge.png: png is 2048x1024 px; width and height must each be over 360 and under 2000
  jobs.yaml:8:47: job small-1: input.img_url: media dimensions: BASE/small.jpg: jpeg is 300x300 px; width and height must each be over 360 and under 2000
  jobs.yaml:9:44: job small-2: input.seed: minimum: -1 is below the minimum 0
  jobs.yaml:9:57: job small-2: input.img_url: media dimensions: BASE/small.jpg: jpeg is 300x300 px; width and height must each be over 360 and under 2000
  jobs.yaml:10:47: job short: input.audio_url: media duration: BASE/short.wav: wav lasts 2.0 s; it must last 3s to 30s
  jobs.yaml:11:44: job html: input.img_url: media format: BASE/not-an-image: not a recognised image; accepted formats: jpeg, png, bmp, webp
  jobs.yaml:12:44: job gone: input.img_url: media fetch: BASE/gone.png: answered HTTP 404 Not Found
`
	if got != want {
		t.Fatalf("report:\n%s\nwant:\n%s", got, want)
	}
	for _, p := range []string{"/good.png", "/png-as.jpg", "/huge.png", "/small.jpg", "/short.wav", "/ok.wav", "/not-an-image", "/gone.png"} {
		if n := hits(p); n != 1 {
			t.Errorf("%s fetched %d times, want once", p, n)
		}
	}

	// Without --media nothing is fetched, and only the schema problem remains.
	before := hits("/small.jpg")
	r = runMain(t, nil, "validate", "jobs.yaml")
	if r.code != 2 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "input.seed") || hits("/small.jpg") != before {
		t.Fatalf("without --media: exit %d:\n%s", r.code, r.stderr)
	}
}

func TestValidateClean(t *testing.T) {
	srv, _ := mediaServer(t)
	t.Chdir(t.TempDir())
	os.WriteFile("jobs.yaml", []byte(fmt.Sprintf("model: wan-ai/wan-2-6/flash/image-to-video\njobs:\n  - {id: a, input: {prompt: p, img_url: %s/good.png, audio_url: %s/ok.wav}}\n", srv.URL, srv.URL)), 0o644)
	r := runMain(t, nil, "validate", "jobs.yaml", "--media")
	if r.code != 0 || r.stderr != "" || r.stdout != "jobs.yaml: 1 job, all valid; 2 media files checked\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = runMain(t, nil, "validate", "jobs.yaml", "--json")
	var v validateJSON
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || r.code != 0 || !v.Valid || v.Jobs != 1 || len(v.Errors) != 0 {
		t.Fatalf("--json: exit %d, %+v, %v", r.code, v, err)
	}
	if _, err := os.Stat("jobs.ledger.db"); err == nil {
		t.Fatal("validate created a ledger")
	}
}

func TestValidateJSONErrors(t *testing.T) {
	t.Chdir(t.TempDir())
	os.WriteFile("jobs.yaml", []byte("model: wan-ai/wan-2-6/flash/image-to-video\njobs:\n  - {id: a, input: {prompt: p}}\n"), 0o644)
	r := runMain(t, nil, "validate", "jobs.yaml", "--json")
	var v validateJSON
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatal(err)
	}
	want := []errorJSON{{File: "jobs.yaml", Line: 3, Col: 5, Job: "a", Field: "input.img_url", Message: "required: img_url is required"}}
	if r.code != 2 || v.Valid || fmt.Sprint(v.Errors) != fmt.Sprint(want) {
		t.Fatalf("exit %d, %+v", r.code, v)
	}
}

func TestModels(t *testing.T) {
	builtin := "wan-ai/wan-2-5/image-to-video\nwan-ai/wan-2-6/flash/image-to-video\nwan-ai/wan-2-6/image-to-video\n"
	if r := runMain(t, nil, "models"); r.code != 0 || r.stdout != builtin {
		t.Fatalf("exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	dir := t.TempDir()
	os.WriteFile(dir+"/s.json", []byte(`{"type": "object", "properties": {"prompt": {"type": "string"}}}`), 0o644)
	r := runMain(t, nil, "models", "--json", "--schema", "acme/zeta="+dir+"/s.json", "--schema", "acme/alpha="+dir+"/s.json")
	var ids []string
	if err := json.Unmarshal([]byte(r.stdout), &ids); err != nil || r.code != 0 {
		t.Fatalf("exit %d, %q: %v", r.code, r.stdout, err)
	}
	if want := append([]string{"acme/alpha", "acme/zeta"}, strings.Fields(builtin)...); fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", ids, want)
	}
	os.WriteFile(dir+"/bad.json", []byte(`{"type": 5}`), 0o644)
	if r := runMain(t, nil, "models", "--schema", "acme/x="+dir+"/bad.json"); r.code != 2 || !strings.Contains(r.stderr, "--schema acme/x=") {
		t.Fatalf("a schema that does not compile: exit %d, %s", r.code, r.stderr)
	}
}
