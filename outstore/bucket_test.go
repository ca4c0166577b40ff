package outstore_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"gocloud.dev/blob/s3blob"

	"comfybatch/outstore"
)

// openFakeS3 opens a bucket of an S3 protocol server in process; puts
// counts the objects written to it (PUT requests).
func openFakeS3(t *testing.T) (b *outstore.Bucket, backend *s3mem.Backend, puts *atomic.Int64) {
	t.Helper()
	backend = s3mem.New()
	puts = new(atomic.Int64)
	if err := backend.CreateBucket("b"); err != nil {
		t.Fatal(err)
	}
	h := gofakes3.New(backend).Server()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			puts.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	client := s3.NewFromConfig(aws.Config{
		Region: "us-east-1",
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test"}, nil
		}),
		BaseEndpoint: aws.String(srv.URL),
	}, func(o *s3.Options) { o.UsePathStyle = true })
	bb, err := s3blob.OpenBucket(context.Background(), client, "b", nil)
	if err != nil {
		t.Fatal(err)
	}
	b = outstore.NewBucket(bb, "s3://b")
	t.Cleanup(func() { b.Close() })
	return b, backend, puts
}

func TestBucketMultipartCommit(t *testing.T) {
	b, backend, _ := openFakeS3(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	body := bytes.Repeat([]byte("0123456789abcdef"), (12<<20)/16)
	w, err := b.Create(ctx, "x.mp4")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(w, bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	o, err := backend.GetObject("b", "x.mp4", nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(o.Contents)
	if !bytes.Equal(got, body) {
		t.Fatalf("%d bytes", len(got))
	}
}

// An aborted write leaves what the name held before, and a missing object
// is fs.ErrNotExist; Move never overwrites.
func TestBucketAbortMoveAndMissing(t *testing.T) {
	b, _, _ := openFakeS3(t)
	ctx := context.Background()
	put := func(name, body string) {
		w, err := b.Create(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, body)
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	put("a.txt", "first")
	w, err := b.Create(ctx, "a.txt")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "second, cut")
	w.Abort()
	if n, err := b.Size(ctx, "a.txt"); err != nil || n != 5 {
		t.Fatalf("after an aborted rewrite: %d bytes, %v; want the first 5", n, err)
	}
	if _, err := b.Size(ctx, "none.txt"); !outstore.ErrNotExist(err) {
		t.Fatalf("missing object: %v, want fs.ErrNotExist", err)
	}
	put("b.txt", "other")
	if err := b.Move(ctx, "a.txt", "b.txt"); err == nil {
		t.Fatal("Move overwrote an object")
	}
	if err := b.Move(ctx, "a.txt", "_history/a.txt"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Size(ctx, "a.txt"); !outstore.ErrNotExist(err) {
		t.Fatalf("moved object still at its old name: %v", err)
	}
	sizes, err := b.Sizes(ctx)
	if err != nil || sizes["_history/a.txt"] != 5 || sizes["b.txt"] != 5 || len(sizes) != 2 {
		t.Fatalf("Sizes %v, %v", sizes, err)
	}
}

func TestLocations(t *testing.T) {
	for _, c := range []struct {
		loc  string
		url  bool
		join string
	}{
		{"out", false, "out/x.mp4"},
		{"/abs/out", false, "/abs/out/x.mp4"},
		{"s3://b/p/q?region=eu-west-1", true, "s3://b/p/q/x.mp4"},
		{"gs://b", true, "gs://b/x.mp4"},
		{"azblob://c/p/", true, "azblob://c/p/x.mp4"},
		{"./weird://name", false, "weird:/name/x.mp4"},
	} {
		if got := outstore.IsURL(c.loc); got != c.url {
			t.Errorf("IsURL(%q) = %v", c.loc, got)
		}
		if got := outstore.Join(c.loc, "x.mp4"); got != c.join {
			t.Errorf("Join(%q) = %q, want %q", c.loc, got, c.join)
		}
	}
	for _, bad := range []string{"http://host/x", "s3:///prefix", "s3://b/p?prefix=q/"} {
		if _, err := outstore.OpenBucket(context.Background(), bad); err == nil {
			t.Errorf("OpenBucket(%q) accepted", bad)
		}
	}
}
