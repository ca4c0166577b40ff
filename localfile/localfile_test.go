package localfile

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRefRoundTrip(t *testing.T) {
	r := Ref{Path: "frames/a #1.png", SHA256: strings.Repeat("ab", 32)}
	got, ok := Parse(r.String())
	if !ok || got != r {
		t.Fatalf("Parse(%q) = %+v, %v", r.String(), got, ok)
	}
	for _, s := range []string{"frames/a.png", "local:x.png", "local:x.png#sha256=zz", "https://x/y.png", "local:#sha256=" + strings.Repeat("0", 64)} {
		if IsRef(s) {
			t.Errorf("IsRef(%q) = true", s)
		}
	}
	for s, want := range map[string]bool{"a.png": true, "dir/a.png": true, "": false, "https://x/a.png": false, "data:image/png;base64,AA==": false, r.String(): false} {
		if IsPath(s) != want {
			t.Errorf("IsPath(%q) = %v, want %v", s, !want, want)
		}
	}
}

// TestBody: each Ref becomes a data: URI of the file's bytes when the body
// is made, other values stay; a file changed since it was read is refused.
func TestBody(t *testing.T) {
	dir := t.TempDir()
	png := []byte("\x89PNG\r\n\x1a\nrest of it")
	if err := os.WriteFile(filepath.Join(dir, "a.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	sum, _, err := Hash(filepath.Join(dir, "a.png"))
	if err != nil {
		t.Fatal(err)
	}
	ref := Ref{Path: "a.png", SHA256: sum}.String()
	in := `{"img_url":"` + ref + `","image_urls":["https://x/y.png","` + ref + `"],"seed":5}`
	got, err := Body(context.Background(), []byte(in), dir, Inline{})
	if err != nil {
		t.Fatal(err)
	}
	uri := "data:image/png;base64," + base64.StdEncoding.EncodeToString(png)
	want := `{"image_urls":["https://x/y.png","` + uri + `"],"img_url":"` + uri + `","seed":5}`
	if string(got) != want {
		t.Errorf("Body =\n%s\nwant\n%s", got, want)
	}
	if n := DataURILen(int64(len(png)), "image/png"); n != int64(len(uri)) {
		t.Errorf("DataURILen = %d, want %d", n, len(uri))
	}
	if err := os.WriteFile(filepath.Join(dir, "a.png"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Body(context.Background(), []byte(in), dir, Inline{}); err == nil || !strings.Contains(err.Error(), "a.png changed since the manifest was read") {
		t.Errorf("a changed file: %v", err)
	}
}

func TestMediaType(t *testing.T) {
	for _, tt := range []struct{ head, name, want string }{
		{"\x89PNG\r\n\x1a\n", "x.bin", "image/png"},
		{"RIFF\x00\x00\x00\x00WAVEfmt ", "x", "audio/wav"},
		{"\xff\xfb\x90\x00", "song.mp3", "audio/mpeg"},
		{"????", "x.unknownext", "application/octet-stream"},
	} {
		if got := MediaType([]byte(tt.head), tt.name); got != tt.want {
			t.Errorf("MediaType(%q, %s) = %s, want %s", tt.head, tt.name, got, tt.want)
		}
	}
}
