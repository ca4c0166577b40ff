package runner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"gocloud.dev/blob"
	"gocloud.dev/blob/s3blob"

	"comfybatch/lifecycle"
	"comfybatch/outstore"
	"comfybatch/runcomfy/runcomfytest"
	"comfybatch/store"
)

// fakeS3 is an S3 protocol server in process (gofakes3 over memory), with
// one bucket, reached through gocloud's S3 driver as a run reaches any
// bucket. Tests look at what it holds through its backend, not through
// the code under test.
type fakeS3 struct {
	backend *s3mem.Backend
	url     string
	bucket  string
	prefix  string

	partOnce sync.Once
	part     chan struct{} // closed once a part of a multipart upload is stored
	mu       sync.Mutex
	calls    []string // multipart calls answered: "part", "complete", "abort"
}

func newFakeS3(t *testing.T) *fakeS3 {
	t.Helper()
	backend := s3mem.New()
	f := &fakeS3{backend: backend, bucket: "outs", prefix: "run-1/", part: make(chan struct{})}
	s3h := gofakes3.New(backend).Server()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s3h.ServeHTTP(w, r)
		q := r.URL.Query()
		call := ""
		switch {
		case !q.Has("uploadId"):
		case r.Method == http.MethodPut:
			call = "part"
			f.partOnce.Do(func() { close(f.part) })
		case r.Method == http.MethodPost:
			call = "complete"
		case r.Method == http.MethodDelete:
			call = "abort"
		}
		if call != "" {
			f.mu.Lock()
			f.calls = append(f.calls, call)
			f.mu.Unlock()
		}
	}))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	if err := backend.CreateBucket(f.bucket); err != nil {
		t.Fatal(err)
	}
	return f
}

// open opens the bucket's prefix for a run, with static test credentials
// (never the machine's chain: a test must not go looking for a cloud).
func (f *fakeS3) open(t *testing.T) *outstore.Bucket {
	t.Helper()
	client := s3.NewFromConfig(aws.Config{
		Region: "us-east-1",
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test"}, nil
		}),
		BaseEndpoint: aws.String(f.url),
	}, func(o *s3.Options) { o.UsePathStyle = true })
	b, err := s3blob.OpenBucket(context.Background(), client, f.bucket, nil)
	if err != nil {
		t.Fatal(err)
	}
	bucket := outstore.NewBucket(blob.PrefixedBucket(b, f.prefix), "s3://"+f.bucket+"/"+f.prefix)
	t.Cleanup(func() { bucket.Close() })
	return bucket
}

// objects lists what the server holds under the prefix, by name.
func (f *fakeS3) objects(t *testing.T) map[string]int64 {
	t.Helper()
	list, err := f.backend.ListBucket(f.bucket, &gofakes3.Prefix{}, gofakes3.ListBucketPage{})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int64{}
	for _, c := range list.Contents {
		m[strings.TrimPrefix(c.Key, f.prefix)] = c.Size
	}
	return m
}

func (f *fakeS3) read(t *testing.T, name string) []byte {
	t.Helper()
	o, err := f.backend.GetObject(f.bucket, f.prefix+name, nil)
	if err != nil {
		t.Fatalf("object %s: %v", name, err)
	}
	defer o.Contents.Close()
	b, err := io.ReadAll(o.Contents)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Outputs go to the bucket whole, hashed on the way: every object holds
// the bytes the file host served, the ledger records their size and
// sha256, metadata.jsonl is there too, and nothing is written locally.
func TestBucketOutputsAreStreamedAndVerified(t *testing.T) {
	s3 := newFakeS3(t)
	e := newEnv(t, runcomfytest.Config{OutputsPerJob: 2})
	bucket := s3.open(t)
	sum, err := e.run(manifestOf(t, 6, "a fox"), func(c *Config) { c.Out = bucket })
	if err != nil {
		t.Fatal(err)
	}
	if sum.Counts[lifecycle.Done] != 6 {
		t.Fatalf("summary %+v", sum)
	}
	objects := s3.objects(t)
	st, err := store.Open(e.ledger, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var recorded []string
	for id, j := range e.jobs() {
		files, err := st.Files(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if len(files) != 2 {
			t.Fatalf("%s: %d files recorded, want 2", id, len(files))
		}
		for _, f := range files {
			want := runcomfytest.OutputBytes(j.RequestID, f.N)
			got := s3.read(t, f.Path)
			if !bytes.Equal(got, want) {
				t.Fatalf("%s: the object holds %d bytes that differ from the %d served", f.Path, len(got), len(want))
			}
			sha := sha256.Sum256(want)
			if f.Bytes != int64(len(want)) || f.SHA256 != hex.EncodeToString(sha[:]) {
				t.Fatalf("%s: ledger records %d bytes sha256 %s, want %d and %x", f.Path, f.Bytes, f.SHA256, len(want), sha)
			}
			recorded = append(recorded, f.Path)
		}
	}
	meta := string(s3.read(t, MetadataFile))
	if n := strings.Count(meta, "\n"); n != 12 {
		t.Fatalf("metadata.jsonl in the bucket has %d rows, want 12:\n%s", n, meta)
	}
	recorded = append(recorded, MetadataFile)
	sort.Strings(recorded)
	var names []string
	for name := range objects {
		names = append(names, name)
	}
	sort.Strings(names)
	if fmt.Sprint(names) != fmt.Sprint(recorded) {
		t.Fatalf("the bucket holds %v, want exactly %v", names, recorded)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "out")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a run to a bucket made the local output folder (%v)", err)
	}
}

// A download cut short is never uploaded as an object nor recorded: the
// job stays completed, and the next run streams it whole from its first
// byte, without submitting anything.
func TestBucketCutDownloadIsNeverRecordedDone(t *testing.T) {
	s3 := newFakeS3(t)
	host := newFileHost(t)
	body := bytes.Repeat([]byte("frame|"), 50000)
	e := newFilesEnv(t, func(_, req string) []string {
		host.set("/"+req+".mp4", body, `"v1"`)
		host.mu.Lock()
		host.cut["/"+req+".mp4"] = downloadAttempts // every try of this run is cut
		host.mu.Unlock()
		return []string{host.URL + "/" + req + ".mp4"}
	})
	bucket := s3.open(t)
	m := jobsManifest(t, "clip=x")
	noWait := func(c *Config) {
		c.Out = bucket
		c.Sleep = func(context.Context, time.Duration) error { return nil }
	}
	sum := e.run(m, noWait)
	if sum.Counts[lifecycle.Completed] != 1 {
		t.Fatalf("after cut downloads: %+v, want the job completed, not done", sum.Counts)
	}
	if got := s3.objects(t); len(got) != 1 || got[MetadataFile] != 0 {
		t.Fatalf("the bucket holds %v after cut downloads, want only an empty metadata.jsonl", got)
	}
	if len(e.files()) != 0 {
		t.Fatalf("files recorded for cut downloads: %v", e.files())
	}
	if host.ranges.Load() != 0 {
		t.Fatal("a download to a bucket asked for a range: there is no partial object to resume")
	}

	sum = e.run(m, noWait)
	if sum.Counts[lifecycle.Done] != 1 || e.api.n != 1 {
		t.Fatalf("rerun: %+v after %d submissions, want done after 1", sum.Counts, e.api.n)
	}
	if got := s3.read(t, "clip.mp4"); !bytes.Equal(got, body) {
		t.Fatalf("the object holds %d bytes, want the %d served", len(got), len(body))
	}
}

// An upload stopped halfway by a signal leaves no object and no record,
// even when it is a multipart upload with parts already sent: the object
// exists only once the upload is completed, which an aborted one never is.
func TestBucketInterruptedUploadIsNeverRecordedDone(t *testing.T) {
	s3 := newFakeS3(t)
	// Past the S3 driver's 16 MiB threshold, in 5 MiB parts: a multipart
	// upload, whose parts reach the server before the cut.
	const size = 40 << 20
	body := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	halfway, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	host := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.Write(body[:size*3/4])
		w.(http.Flusher).Flush()
		once.Do(func() { close(halfway) })
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(host.Close)
	t.Cleanup(func() { close(release) })
	e := newFilesEnv(t, func(_, req string) []string { return []string{host.URL + "/" + req + ".mp4"} })
	bucket := s3.open(t)

	st, err := store.Open(e.ledger, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	intake, stop := context.WithCancel(context.Background())
	go func() {
		<-halfway
		// The cut falls inside a multipart upload: once a part of it is
		// stored on the server.
		<-s3.part
		stop()
	}()
	sum, err := Run(intake, context.Background(), Config{Manifest: jobsManifest(t, "clip=x"), Store: st, API: e.api,
		HTTP: http.DefaultClient, OutDir: e.out, Out: bucket, Concurrency: 1, PollMax: 20 * time.Millisecond, ProgressEvery: -1})
	st.Close()
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("run: %v, want interrupted (multipart calls: %v)", err, s3.calls)
	}
	if sum.Counts[lifecycle.Completed] != 1 {
		t.Fatalf("after the cut: %+v, want the job completed, not done", sum.Counts)
	}
	if len(e.files()) != 0 {
		t.Fatalf("files recorded for an interrupted upload: %v", e.files())
	}
	if got := s3.objects(t); got["clip.mp4"] != 0 || len(got) > 1 {
		t.Fatalf("the bucket holds %v after an interrupted upload, want no clip.mp4", got)
	}
	s3.mu.Lock()
	calls := fmt.Sprint(s3.calls)
	s3.mu.Unlock()
	if !strings.Contains(calls, "part") || strings.Contains(calls, "complete") {
		t.Fatalf("multipart calls %s: want parts sent and the upload never completed", calls)
	}
}
