package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"regexp"

	"comfybatch/outstore"
	"comfybatch/store"
)

// HistoryDir is the folder, inside the output folder, where the files of a
// job's earlier results are kept when its input changes: they were paid
// for. No output can be named like it: job ids start with a letter or a
// digit.
const HistoryDir = "_history"

// keeper moves files between a job's place in the output folder (or
// bucket) and its history, for store.SyncKeeping.
type keeper struct {
	ctx context.Context
	out outstore.Store
}

var safeName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// historyPath is where file f of job id's request goes:
// _history/<id>/<request id>/<name>. A request id that is not a plain name
// is replaced by a hash of it, so a server cannot steer the path.
func historyPath(id, requestID string, f store.File) string {
	req := requestID
	if !safeName.MatchString(req) {
		h := sha256.Sum256([]byte(requestID))
		req = "req-" + hex.EncodeToString(h[:8])
	}
	return path.Join(HistoryDir, id, req, path.Base(f.Path))
}

func (k keeper) Archive(id, requestID string, files []store.File) ([]store.File, error) {
	var out []store.File
	for _, f := range files {
		dst := historyPath(id, requestID, f)
		kept, err := k.holds(dst, f)
		if err != nil {
			return nil, err
		}
		if !kept {
			// Not moved by an earlier try that crashed before the ledger
			// heard of it: what is at the live name is this file, or gone.
			live, err := k.holds(f.Path, f)
			if err != nil {
				return nil, err
			}
			if !live {
				continue // gone: nothing to keep, nothing to record
			}
			if err := k.move(f.Path, dst); err != nil {
				return nil, fmt.Errorf("keep %s in %s: %w", f.Path, HistoryDir, err)
			}
		}
		f.Path = dst
		out = append(out, f)
	}
	return out, nil
}

func (k keeper) Restore(id string, files []store.File) ([]store.File, bool, error) {
	out := make([]store.File, len(files))
	whole := true
	for i, f := range files {
		live := path.Base(f.Path)
		// Restored already by an earlier try that crashed before the
		// ledger heard of it, or to be moved back now.
		there, err := k.holds(live, f)
		if err != nil {
			return nil, false, err
		}
		if !there {
			kept, err := k.holds(f.Path, f)
			if err != nil {
				return nil, false, err
			}
			if kept && k.move(f.Path, live) == nil {
				there, err = k.holds(live, f)
				if err != nil {
					return nil, false, err
				}
			}
		}
		whole = whole && there
		f.Path = live
		out[i] = f
	}
	return out, whole, nil
}

// holds reports whether the file at rel (under the output folder) is f:
// its size and its sha256. A kept result is restored only when its bytes
// are the ones paid for. Only a missing file or other bytes say no; any
// other failure (a bucket's 503, expired credentials) is an error, never
// taken for "gone", which would leave a paid result to be overwritten.
func (k keeper) holds(rel string, f store.File) (bool, error) {
	n, err := k.out.Size(k.ctx, rel)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("look at %s: %w", rel, err)
	case n != f.Bytes:
		return false, nil
	}
	file, err := k.out.Open(k.ctx, rel)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", rel, err)
	}
	defer file.Close()
	h := sha256.New()
	if _, err := io.Copy(h, file); err != nil {
		return false, fmt.Errorf("read %s: %w", rel, err)
	}
	return hex.EncodeToString(h.Sum(nil)) == f.SHA256, nil
}

// move renames src to dst (both relative to the output folder), never over
// an existing file.
func (k keeper) move(src, dst string) error { return k.out.Move(k.ctx, src, dst) }
