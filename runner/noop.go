package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"comfybatch/lifecycle"
	"comfybatch/manifest"
	"comfybatch/store"
)

// A rerun with nothing to do should cost what it takes to see that nothing
// changed, not a parse of 100,000 jobs. After a run that left nothing to
// do, the ledger keeps a stamp of everything that decides the jobs and
// their fingerprints: the manifest's and its includes' bytes, the schema
// files, and the comfybatch binary itself (its built-in schemas and rules).
// A later run whose stamp is the same, whose ledger has nothing to do under
// its flags, and whose files are all on disk is a no-op without reading the
// manifest.

// stampKey is the ledger meta key of the stamp.
const stampKey = "noop_stamp"

// Sources are the files that decide a manifest's jobs.
type Sources struct {
	Manifest string   // the manifest's path
	Includes []string // the files it includes (Manifest.Includes)
	Schemas  []string // schema files given on the command line
	Binary   string   // the running executable ("" to leave it out: tests)
	OutDir   string   // where its files are
}

type noopStamp struct {
	Sum      string   `json:"sum"`
	Includes []string `json:"includes"`
	Jobs     int      `json:"jobs"`
	OutDir   string   `json:"out_dir"`
}

// sum hashes every source file's path and bytes, streamed.
func (s Sources) sum() (string, error) {
	h := sha256.New()
	files := append([]string{s.Manifest, s.Binary}, s.Includes...)
	files = append(files, s.Schemas...)
	for i, p := range files {
		if i == 1 {
			fmt.Fprint(h, "binary\n") // its bytes, wherever it runs from (go run builds it elsewhere each time)
		} else {
			fmt.Fprintf(h, "%q\n", p)
		}
		if p == "" {
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			return "", err
		}
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", err
		}
	}
	fmt.Fprintf(h, "out %q\n", s.OutDir)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// NothingToDo reports whether a run of src with flags f would do nothing:
// its sources are those the ledger stamped after its last run, the ledger
// holds just the manifest's jobs, none of which a run would act on, and
// every recorded file is on disk with its size. It never errs on the side
// of skipping: anything it cannot tell sends the run the long way.
func NothingToDo(ctx context.Context, st *store.Store, src Sources, f lifecycle.Flags) (map[lifecycle.State]int, bool) {
	raw, err := st.Meta(ctx, stampKey)
	if err != nil || raw == "" {
		return nil, false
	}
	var stamp noopStamp
	if json.Unmarshal([]byte(raw), &stamp) != nil {
		return nil, false
	}
	if src.OutDir == "" {
		src.OutDir = stamp.OutDir // decided by the manifest, whose bytes are in the sum
	}
	src.Includes = stamp.Includes
	if sum, err := src.sum(); err != nil || sum != stamp.Sum {
		return nil, false
	}
	counts, err := st.Counts(ctx)
	if err != nil {
		return nil, false
	}
	total := 0
	for state, n := range counts {
		total += n
		if n > 0 && lifecycle.Next(state, lifecycle.Unchanged, f) != lifecycle.ActionNone {
			return nil, false
		}
	}
	if total != stamp.Jobs {
		return nil, false
	}
	if _, err := os.Stat(filepath.Join(src.OutDir, MetadataFile)); err != nil {
		return nil, false
	}
	missing := errors.New("a file is missing")
	err = st.EachFile(ctx, func(_ string, fl store.File) error {
		if fi, err := os.Stat(filepath.Join(src.OutDir, fl.Path)); err != nil || fi.Size() != fl.Bytes {
			return missing
		}
		return nil
	})
	if err != nil {
		return nil, false
	}
	return counts, true
}

// StampNothingToDo records, after a run, the stamp NothingToDo looks for,
// when the run left nothing to do; otherwise it clears it. manifestBefore
// is FileSum of the manifest taken before it was read: a manifest edited
// since is not stamped.
func StampNothingToDo(ctx context.Context, st *store.Store, m *manifest.Manifest, src Sources, manifestBefore string, f lifecycle.Flags) error {
	src.Includes = slices.Clone(m.Includes)
	sum, err := src.sum()
	if now, ferr := FileSum(src.Manifest); err != nil || ferr != nil || now != manifestBefore {
		return st.SetMeta(ctx, stampKey, "")
	}
	counts, err := st.Counts(ctx)
	if err != nil {
		return err
	}
	total := 0
	for state, n := range counts {
		total += n
		if n > 0 && lifecycle.Next(state, lifecycle.Unchanged, f) != lifecycle.ActionNone {
			return st.SetMeta(ctx, stampKey, "")
		}
	}
	if total != len(m.Jobs) {
		return st.SetMeta(ctx, stampKey, "")
	}
	// Every job as the manifest has it now: a change that waited for its
	// earlier request to be collected (deferred) is work for the next run,
	// which must read the manifest to see it.
	known, err := st.Known(ctx)
	if err != nil {
		return err
	}
	for _, j := range m.ByID() {
		if k, ok := known[j.ID]; !ok || k.Fingerprint != j.Fingerprint() {
			return st.SetMeta(ctx, stampKey, "")
		}
	}
	b, _ := json.Marshal(noopStamp{Sum: sum, Includes: src.Includes, Jobs: total, OutDir: src.OutDir})
	return st.SetMeta(ctx, stampKey, string(b))
}

// FileSum hashes one file's bytes.
func FileSum(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// StampedOutDir is the output folder the stamp recorded.
func StampedOutDir(ctx context.Context, st *store.Store) string {
	raw, _ := st.Meta(ctx, stampKey)
	var stamp noopStamp
	json.Unmarshal([]byte(raw), &stamp)
	return stamp.OutDir
}
