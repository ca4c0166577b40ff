package outstore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"comfybatch/localfile"
	"comfybatch/outstore"
)

// Each local input is uploaded once per content, and what is sent is a
// pre-signed URL whose GET answers the file's bytes, signed anew at each
// call with the lifetime asked for.
func TestUploaderOncePerContentAndSignedURLs(t *testing.T) {
	b, backend, puts := openFakeS3(t)
	ctx := context.Background()
	dir := t.TempDir()
	data := bytes.Repeat([]byte("png bytes "), 1000)
	sum := sha256.Sum256(data)
	ref := localfile.Ref{Path: "frames/a.PNG", SHA256: hex.EncodeToString(sum[:])}
	file := filepath.Join(dir, "a.png")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	u := &outstore.Uploader{Bucket: b, Lifetime: 90 * 60 * 1e9}
	var urls []string
	for i := 0; i < 3; i++ { // three jobs naming the same file
		url, err := u.URL(ctx, ref, file)
		if err != nil {
			t.Fatal(err)
		}
		urls = append(urls, url)
	}
	if n := puts.Load(); n != 1 {
		t.Fatalf("%d uploads for three jobs naming one file, want 1", n)
	}
	name := "inputs/" + ref.SHA256 + ".png"
	o, err := backend.HeadObject("b", name)
	if err != nil || o.Size != int64(len(data)) {
		t.Fatalf("object %s: %v", name, err)
	}
	for _, url := range urls {
		if !strings.Contains(url, "X-Amz-Expires=5400") || !strings.Contains(url, "X-Amz-Signature=") {
			t.Fatalf("URL %s is not signed for 90 minutes", url)
		}
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Equal(got, data) {
			t.Fatalf("GET signed URL: %d, %d bytes; want the file's %d", resp.StatusCode, len(got), len(data))
		}
	}

	// Once per content across runs too: a new uploader finds it there.
	if err := os.WriteFile(file, []byte("edited"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := (&outstore.Uploader{Bucket: b}).URL(ctx, ref, file); err != nil || puts.Load() != 1 {
		t.Fatalf("content already in the bucket was uploaded again (%d uploads): %v", puts.Load(), err)
	}
	// A file edited since the manifest read it is not uploaded for it.
	other := localfile.Ref{Path: "b.png", SHA256: strings.Repeat("0", 64)}
	if _, err := (&outstore.Uploader{Bucket: b}).URL(ctx, other, file); err == nil || !strings.Contains(err.Error(), "changed since") {
		t.Fatalf("edited file: %v", err)
	}
	if _, err := backend.HeadObject("b", "inputs/"+other.SHA256+".png"); err == nil {
		t.Fatal("an edited file was uploaded under the old content's name")
	}
}
