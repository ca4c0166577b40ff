package outstore

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/url"
	"path"
	"strings"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/azureblob" // azblob://
	_ "gocloud.dev/blob/fileblob"  // file://, for tests
	_ "gocloud.dev/blob/gcsblob"   // gs://
	_ "gocloud.dev/blob/s3blob"    // s3://
	"gocloud.dev/gcerrors"
)

// Bucket is a bucket, or a prefix in one, holding output files as objects.
//
// A bucket has no rename and no partial object to resume: a file is
// streamed to it as one upload that the service turns into an object only
// when it completes, and a download cut halfway restarts from its first
// byte (on the next try, or the next run).
type Bucket struct {
	b        *blob.Bucket
	location string
}

// NewBucket wraps an open bucket; location is how it is shown.
func NewBucket(b *blob.Bucket, location string) *Bucket {
	return &Bucket{b: b, location: location}
}

// OpenBucket opens a bucket URL: s3://BUCKET/PREFIX, gs://BUCKET/PREFIX,
// azblob://CONTAINER/PREFIX, or file:///FOLDER. The path after the bucket
// is a prefix every name is put under; the query carries the driver's
// options (region, endpoint, ...). The credentials are the cloud's own
// standard chain's.
func OpenBucket(ctx context.Context, location string) (*Bucket, error) {
	u, err := url.Parse(location)
	if err != nil {
		return nil, fmt.Errorf("bucket URL %q: %w", location, err)
	}
	if !schemes[u.Scheme] {
		return nil, fmt.Errorf("bucket URL %q: unknown scheme %q; use s3://, gs://, azblob:// (or file:// for a folder through the bucket code)", location, u.Scheme)
	}
	q := u.Query()
	if u.Scheme == "file" {
		q.Set("create_dir", "true")
		u.RawQuery = q.Encode()
	} else {
		if u.Host == "" {
			return nil, fmt.Errorf("bucket URL %q names no bucket: write %s://BUCKET/PREFIX", location, u.Scheme)
		}
		if p := strings.Trim(u.Path, "/"); p != "" {
			if q.Has("prefix") {
				return nil, fmt.Errorf("bucket URL %q gives a prefix twice, in its path and as ?prefix=: keep one", location)
			}
			q.Set("prefix", p+"/")
		}
		u.Path, u.RawQuery = "", q.Encode()
	}
	b, err := blob.OpenBucket(ctx, u.String())
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", location, err)
	}
	return &Bucket{b: b, location: location}, nil
}

func (b *Bucket) String() string { return b.location }

func (b *Bucket) Close() error { return b.b.Close() }

// Blob is the bucket underneath, for what this package does not cover.
func (b *Bucket) Blob() *blob.Bucket { return b.b }

func (b *Bucket) Size(ctx context.Context, name string) (int64, error) {
	a, err := b.b.Attributes(ctx, name)
	if err != nil {
		return 0, b.wrap("stat", name, err)
	}
	return a.Size, nil
}

func (b *Bucket) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	r, err := b.b.NewReader(ctx, name, nil)
	if err != nil {
		return nil, b.wrap("open", name, err)
	}
	return r, nil
}

// uploadPart is the size of one part of a multipart upload (S3's
// smallest), and uploadParallel how many parts of one file are in flight:
// a run uploads many files at once, so each keeps its memory small.
const (
	uploadPart     = 5 << 20
	uploadParallel = 2
)

// Create streams to the object name. The upload runs under its own
// context, cancelled by Abort: a cancelled upload is never completed, so
// the service creates no object (an S3 multipart upload is aborted; one
// a killed process left open holds no object, and a bucket lifecycle rule
// removes its parts).
func (b *Bucket) Create(ctx context.Context, name string) (Writer, error) {
	ctx, cancel := context.WithCancel(ctx)
	opts := &blob.WriterOptions{BufferSize: uploadPart, MaxConcurrency: uploadParallel}
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		opts.ContentType = t
	}
	w, err := b.b.NewWriter(ctx, name, opts)
	if err != nil {
		cancel()
		return nil, b.wrap("create", name, err)
	}
	return &bucketWriter{w: w, cancel: cancel, b: b, name: name}, nil
}

type bucketWriter struct {
	w      *blob.Writer
	cancel context.CancelFunc
	b      *Bucket
	name   string
}

func (w *bucketWriter) Write(p []byte) (int, error) { return w.w.Write(p) }

func (w *bucketWriter) Commit() error {
	defer w.cancel()
	if err := w.w.Close(); err != nil {
		return w.b.wrap("upload", w.name, err)
	}
	return nil
}

func (w *bucketWriter) Abort() {
	w.cancel() // first: the upload must see a cancelled context, not an end of data
	w.w.Close()
}

// Move copies src to dst and deletes src: a bucket has no rename. dst is
// never overwritten.
func (b *Bucket) Move(ctx context.Context, src, dst string) error {
	if ok, err := b.b.Exists(ctx, dst); err != nil {
		return b.wrap("stat", dst, err)
	} else if ok {
		return fmt.Errorf("%s is already there", dst)
	}
	if err := b.b.Copy(ctx, dst, src, nil); err != nil {
		return b.wrap("copy", src, err)
	}
	if err := b.b.Delete(ctx, src); err != nil {
		return b.wrap("delete", src, err)
	}
	return nil
}

// wrap names the operation and object, and makes a missing object an
// fs.ErrNotExist.
func (b *Bucket) wrap(op, name string, err error) error {
	if gcerrors.Code(err) == gcerrors.NotFound {
		err = fmt.Errorf("%w (%v)", fs.ErrNotExist, err)
	}
	return fmt.Errorf("%s %s in %s: %w", op, name, b.location, err)
}

// Sizes lists every object under the bucket's prefix with its size: one
// list call per thousand objects, where asking for each file would cost a
// request per file.
func (b *Bucket) Sizes(ctx context.Context) (map[string]int64, error) {
	sizes := map[string]int64{}
	it := b.b.List(nil)
	for {
		o, err := it.Next(ctx)
		if err == io.EOF {
			return sizes, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", b.location, err)
		}
		if !o.IsDir {
			sizes[o.Key] = o.Size
		}
	}
}
