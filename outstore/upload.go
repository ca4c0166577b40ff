package outstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"gocloud.dev/blob"

	"comfybatch/localfile"
)

// URLLifetime is how long a pre-signed input URL stays valid. RunComfy
// fetches an input when the job starts, which for a large batch can be
// hours after the submit; a day covers an overnight queue, while a leaked
// URL stays usable for a day only (S3 and GCS allow at most seven). A URL
// is signed at each submit, so a job submitted later than that still gets
// a fresh one.
const URLLifetime = 24 * time.Hour

// Uploader is a localfile.Sender that puts each local input file in the
// user's bucket once per content hash, under inputs/<sha256><ext>, and
// sends a pre-signed GET URL in its place. The object's name is its
// content's hash, so a file already there (from this run or an earlier
// one) is not uploaded again.
type Uploader struct {
	Bucket   *Bucket
	Lifetime time.Duration // default URLLifetime

	mu   sync.Mutex
	done map[string]*sync.Once // by object name: one upload at a time per content
	errs map[string]error
}

var _ localfile.Sender = (*Uploader)(nil)

// URL uploads the file unless its content is already in the bucket, and
// signs a GET URL for it.
func (u *Uploader) URL(ctx context.Context, ref localfile.Ref, file string) (string, error) {
	name := "inputs/" + ref.SHA256 + strings.ToLower(path.Ext(ref.Path))
	u.mu.Lock()
	if u.done == nil {
		u.done, u.errs = map[string]*sync.Once{}, map[string]error{}
	}
	once, ok := u.done[name]
	if !ok {
		once = new(sync.Once)
		u.done[name] = once
	}
	u.mu.Unlock()
	once.Do(func() {
		err := u.put(ctx, ref, file, name)
		u.mu.Lock()
		defer u.mu.Unlock()
		if err != nil {
			delete(u.done, name) // tried again by the next job that needs it
		}
		u.errs[name] = err
	})
	u.mu.Lock()
	err := u.errs[name]
	u.mu.Unlock()
	if err != nil {
		return "", err
	}
	life := u.Lifetime
	if life <= 0 {
		life = URLLifetime
	}
	signed, err := u.Bucket.b.SignedURL(ctx, name, &blob.SignedURLOptions{Expiry: life, Method: http.MethodGet})
	if err != nil {
		return "", fmt.Errorf("sign a URL for %s: %w", ref.Path, err)
	}
	return signed, nil
}

// put uploads file as name, checking on the way that it still holds the
// bytes the manifest read: a file edited since is never sent for the old
// job.
func (u *Uploader) put(ctx context.Context, ref localfile.Ref, file, name string) error {
	if _, err := u.Bucket.Size(ctx, name); err == nil {
		return nil // the same content, uploaded before
	} else if !ErrNotExist(err) {
		return err
	}
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("read %s: %w", ref.Path, err)
	}
	defer f.Close()
	w, err := u.Bucket.Create(ctx, name)
	if err != nil {
		return err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(w, h), f); err != nil {
		w.Abort()
		return fmt.Errorf("upload %s: %w", ref.Path, err)
	}
	if hex.EncodeToString(h.Sum(nil)) != ref.SHA256 {
		w.Abort()
		return fmt.Errorf("%s changed since the manifest was read; run again to submit its new content as a changed job", ref.Path)
	}
	return w.Commit()
}
