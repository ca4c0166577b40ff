package runner

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"

	"comfybatch/lifecycle"
	"comfybatch/manifest"
	"comfybatch/outstore"
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

// globSource marks a folder include's pattern among Sources.Includes.
const globSource = "glob:"

// Sources are the files that decide a manifest's jobs.
type Sources struct {
	Manifest string   // the manifest's path
	Includes []string // the files it includes (Manifest.Includes), its local input files, and its folder includes' patterns
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

// sum hashes every source file's bytes (and, but for the binary's, its
// path: go run builds the binary somewhere new each time), streamed.
func (s Sources) sum() (string, error) {
	h := sha256.New()
	if s.Binary != "" {
		if err := hashBinary(h, s.Binary); err != nil {
			return "", err
		}
	}
	for _, p := range append(append([]string{s.Manifest}, s.Includes...), s.Schemas...) {
		fmt.Fprintf(h, "%q\n", p)
		if glob, ok := strings.CutPrefix(p, globSource); ok {
			// A folder include: the files it matches decide its jobs.
			matches, err := filepath.Glob(glob)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(h, "%q\n", matches)
			continue
		}
		if err := hashFile(h, p); err != nil {
			return "", err
		}
	}
	fmt.Fprintf(h, "out %q\n", s.OutDir)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// hashBinary hashes what identifies a build of the executable at path: its
// Go build ID, a hash of its contents that the toolchain writes into every
// ELF binary, read in a few kilobytes; else, on other formats, its bytes
// (75 MB with the cloud SDKs: a tenth of a second of every no-op rerun).
func hashBinary(h io.Writer, path string) error {
	if id, err := goBuildID(path); err == nil && id != "" {
		_, err := fmt.Fprintf(h, "go build id %q\n", id)
		return err
	}
	return hashFile(h, path)
}

// goBuildID reads the Go build ID note of an ELF executable.
func goBuildID(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sec := f.Section(".note.go.buildid")
	if sec == nil {
		return "", errors.New("no Go build ID note")
	}
	data, err := sec.Data()
	if err != nil {
		return "", err
	}
	// An ELF note: name size, descriptor size, type, then "Go\x00\x00"
	// and the ID.
	if len(data) < 16 || string(data[12:16]) != "Go\x00\x00" {
		return "", errors.New("not a Go build ID note")
	}
	descSize := int(f.ByteOrder.Uint32(data[4:8]))
	if 16+descSize > len(data) {
		return "", errors.New("short Go build ID note")
	}
	return string(data[16 : 16+descSize]), nil
}

func hashFile(h io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(h, f)
	return err
}

// FileSum hashes one file's bytes.
func FileSum(path string) (string, error) {
	h := sha256.New()
	if err := hashFile(h, path); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// idle reports whether a run under f would act on none of the jobs counted,
// and how many they are.
func idle(counts map[lifecycle.State]int, f lifecycle.Flags) (total int, ok bool) {
	for state, n := range counts {
		total += n
		if n > 0 && lifecycle.Next(state, lifecycle.Unchanged, f) != lifecycle.ActionNone {
			return total, false
		}
	}
	return total, true
}

// NothingToDo reports whether a run of src with flags f would do nothing:
// its sources are those the ledger stamped after its last run, the ledger
// holds just the manifest's jobs, none of which a run would act on, and
// every recorded file is on disk with its size. It gives the jobs' counts
// and the output folder the stamp names (src.OutDir, when given, must be
// it). It never errs on the side of skipping: anything it cannot tell sends
// the run the long way.
func NothingToDo(ctx context.Context, st *store.Store, src Sources, f lifecycle.Flags) (counts map[lifecycle.State]int, outDir string, ok bool) {
	raw, err := st.Meta(ctx, stampKey)
	var stamp noopStamp
	if err != nil || raw == "" || json.Unmarshal([]byte(raw), &stamp) != nil {
		return nil, "", false
	}
	if src.OutDir == "" {
		src.OutDir = stamp.OutDir // decided by the manifest, whose bytes are in the sum
	}
	src.Includes = stamp.Includes
	if sum, err := src.sum(); err != nil || sum != stamp.Sum {
		return nil, "", false
	}
	if counts, err = st.Counts(ctx); err != nil {
		return nil, "", false
	}
	if total, ok := idle(counts, f); !ok || total != stamp.Jobs {
		return nil, "", false
	}
	bucket := outstore.IsURL(src.OutDir)
	if !bucket {
		if _, err := os.Stat(filepath.Join(src.OutDir, MetadataFile)); err != nil {
			return nil, "", false
		}
	}
	var files []sizedFile
	err = st.EachFileSize(ctx, func(path string, n int64) error {
		files = append(files, sizedFile{path, n})
		return nil
	})
	if err != nil {
		return nil, "", false
	}
	if bucket && !allInBucket(ctx, src.OutDir, files) || !bucket && !allOnDisk(ctx, src.OutDir, files) {
		return nil, "", false
	}
	return counts, src.OutDir, true
}

// allInBucket says whether metadata.jsonl and every file are in the bucket
// with their sizes, from one listing of it.
func allInBucket(ctx context.Context, location string, files []sizedFile) bool {
	b, err := outstore.OpenBucket(ctx, location)
	if err != nil {
		return false
	}
	defer b.Close()
	sizes, err := b.Sizes(ctx)
	if err != nil {
		return false
	}
	if _, ok := sizes[MetadataFile]; !ok {
		return false
	}
	for _, f := range files {
		if n, ok := sizes[f.path]; !ok || n != f.bytes {
			return false
		}
	}
	return true
}

type sizedFile struct {
	path  string
	bytes int64
}

// allOnDisk says whether every file is in dir with its size. The stats run
// side by side: on a 100,000-file folder they were most of a no-op rerun.
func allOnDisk(ctx context.Context, dir string, files []sizedFile) bool {
	missing := errors.New("a file is missing")
	// Within the folder opened once: each look is then one name, not a
	// path walked from the root, and no recorded path leads outside it.
	root, err := os.OpenRoot(dir)
	if err != nil {
		return false
	}
	defer root.Close()
	g, ctx := errgroup.WithContext(ctx)
	workers := min(4*runtime.GOMAXPROCS(0), 16)
	chunk := max((len(files)+workers-1)/workers, 1)
	for lo := 0; lo < len(files); lo += chunk {
		part := files[lo:min(lo+chunk, len(files))]
		g.Go(func() error {
			for i, f := range part {
				if i%1024 == 0 && ctx.Err() != nil {
					return ctx.Err()
				}
				fi, err := root.Stat(f.path)
				if err != nil && !errors.Is(err, fs.ErrNotExist) {
					// A link out of the folder, which os.Root refuses;
					// the run itself follows it, and so does this look.
					fi, err = os.Stat(filepath.Join(dir, f.path))
				}
				if err != nil || fi.Size() != f.bytes {
					return missing
				}
			}
			return nil
		})
	}
	return g.Wait() == nil
}

// StampNothingToDo records, after a run, the stamp NothingToDo looks for,
// when the run left nothing to do; otherwise it clears it. manifestBefore
// is FileSum of the manifest taken before it was read (a manifest edited
// since is not stamped); deferred counts the jobs whose change waited for
// their earlier request (SyncReport.Deferred): the next run must read the
// manifest to submit them.
func StampNothingToDo(ctx context.Context, st *store.Store, m *manifest.Manifest, src Sources, manifestBefore string, deferred int, f lifecycle.Flags) error {
	src.Includes = slices.Concat(m.Includes, m.Files)
	for _, g := range m.Globs {
		src.Includes = append(src.Includes, globSource+g)
	}
	sum, err := src.sum()
	if now, ferr := FileSum(src.Manifest); err != nil || ferr != nil || now != manifestBefore || deferred > 0 {
		return st.SetMeta(ctx, stampKey, "")
	}
	counts, err := st.Counts(ctx)
	if err != nil {
		return err
	}
	if total, ok := idle(counts, f); !ok || total != len(m.Jobs) {
		return st.SetMeta(ctx, stampKey, "")
	}
	b, _ := json.Marshal(noopStamp{Sum: sum, Includes: src.Includes, Jobs: len(m.Jobs), OutDir: src.OutDir})
	return st.SetMeta(ctx, stampKey, string(b))
}

// ForgetNothingToDo clears the stamp NothingToDo looks for. A run with a
// selection calls it: it brought only its jobs in line with the manifest,
// so the ledger may be idle while the manifest still holds changes.
func ForgetNothingToDo(ctx context.Context, st *store.Store) error {
	return st.SetMeta(ctx, stampKey, "")
}
