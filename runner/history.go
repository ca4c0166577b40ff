package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
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
		switch {
		case k.holds(dst, f):
			// Moved by an earlier try that crashed before the ledger
			// heard of it; what is at the live name now is another file.
		case k.holds(f.Path, f):
			if err := k.move(f.Path, dst); err != nil {
				return nil, fmt.Errorf("keep %s in %s: %w", f.Path, HistoryDir, err)
			}
		default:
			continue // gone from disk: nothing to keep, nothing to record
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
		switch {
		case k.holds(live, f):
			// Restored by an earlier try that crashed before the ledger
			// heard of it.
		case k.holds(f.Path, f):
			if err := k.move(f.Path, live); err != nil {
				whole = false
			}
		default:
			whole = false
		}
		if !k.holds(live, f) {
			whole = false
		}
		f.Path = live
		out[i] = f
	}
	return out, whole, nil
}

// holds reports whether the file at rel (under the output folder) is f:
// its size and its sha256. A kept result is restored only when its bytes
// are the ones paid for.
func (k keeper) holds(rel string, f store.File) bool {
	if n, err := k.out.Size(k.ctx, rel); err != nil || n != f.Bytes {
		return false
	}
	file, err := k.out.Open(k.ctx, rel)
	if err != nil {
		return false
	}
	defer file.Close()
	h := sha256.New()
	if _, err := io.Copy(h, file); err != nil {
		return false
	}
	return hex.EncodeToString(h.Sum(nil)) == f.SHA256
}

// move renames src to dst (both relative to the output folder), never over
// an existing file.
func (k keeper) move(src, dst string) error { return k.out.Move(k.ctx, src, dst) }
