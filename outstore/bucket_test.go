package outstore_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"gocloud.dev/blob/s3blob"

	"comfybatch/outstore"
)

func openFakeS3(t *testing.T) (*outstore.Bucket, *s3mem.Backend) {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket("b"); err != nil {
		t.Fatal(err)
	}
	h := gofakes3.New(backend).Server()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	b, err := s3blob.OpenBucket(context.Background(), client, "b", nil)
	if err != nil {
		t.Fatal(err)
	}
	bucket := outstore.NewBucket(b, "s3://b")
	t.Cleanup(func() { bucket.Close() })
	return bucket, backend
}

func TestBucketMultipartCommit(t *testing.T) {
	b, backend := openFakeS3(t)
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
