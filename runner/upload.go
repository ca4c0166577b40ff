package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"time"

	"comfybatch/store"
)

// Outputs to a bucket take another road than to a folder: a bucket keeps
// no partial object to resume, so each try streams the file from its first
// byte straight into one upload, hashing and counting the bytes on the
// way. The upload is completed (and the object made) only once the body
// is proven whole; a cut, a short body or a signal aborts it, and nothing
// is recorded. Nothing touches the local disk.

// putBytes writes an output that came inside the result to the bucket.
func (r *run) putBytes(ctx context.Context, o output, ext, source string, data []byte) (store.File, error) {
	name := o.name(ext)
	w, err := r.out.Create(ctx, name)
	if err != nil {
		return store.File{}, err
	}
	if _, err := w.Write(data); err != nil {
		w.Abort()
		return store.File{}, fmt.Errorf("upload %s: %w", name, err)
	}
	if err := w.Commit(); err != nil {
		return store.File{}, err
	}
	sum := sha256.Sum256(data)
	return store.File{N: o.n, URL: source, Path: name, Bytes: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}, nil
}

// streamOnce downloads one output file into an upload to the bucket. The
// answers of the file host are read as fetchOnce reads them, less the
// ranges: what is not whole is never committed.
func (r *run) streamOnce(ctx context.Context, o output, rawURL string) (store.File, error) {
	u, err := outputURL(rawURL)
	if err != nil {
		return store.File{}, err
	}
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return store.File{}, err
	}
	req.Header.Set("Accept-Encoding", "identity")
	stall := time.AfterFunc(r.cfg.StallTimeout, func() { cancel(errStalled) })
	defer stall.Stop()
	resp, err := r.cfg.HTTP.Do(req)
	if err != nil {
		return store.File{}, transientf("download %s: %w", rawURL, stalledOr(rctx, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return store.File{}, hostError(rawURL, resp.StatusCode)
	}
	total := resp.ContentLength
	name := o.name(extension(u.Path, resp.Header.Get("Content-Type")))
	// The upload lives under the run's context, not the download's: a
	// stalled file host cuts the body, which aborts the upload below.
	w, err := r.out.Create(ctx, name)
	if err != nil {
		return store.File{}, transientf("upload %s: %w", name, err)
	}
	h := sha256.New()
	body := &stallReader{r: resp.Body, timer: stall, after: r.cfg.StallTimeout}
	size, err := io.Copy(io.MultiWriter(w, h), body)
	if err != nil {
		w.Abort()
		return store.File{}, transientf("download %s to %s: cut off after %d bytes, the upload dropped: %w", rawURL, name, size, stalledOr(rctx, err))
	}
	switch {
	case total >= 0 && size != total:
		w.Abort()
		return store.File{}, transientf("download %s: got %d of %d bytes; the upload is dropped", rawURL, size, total)
	case total < 0 && !delimited(resp):
		if err := r.proveSize(ctx, rawURL, size); err != nil {
			w.Abort()
			return store.File{}, err
		}
	}
	if err := w.Commit(); err != nil {
		return store.File{}, transientf("%w", err)
	}
	// What the bucket holds now is what was sent: the service counted
	// the same bytes.
	if n, err := r.out.Size(ctx, name); err != nil || n != size {
		return store.File{}, transientf("upload %s: the bucket holds %d bytes, %d were sent (%v)", name, n, size, err)
	}
	return store.File{N: o.n, URL: rawURL, Path: name, Bytes: size, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}
