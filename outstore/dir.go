package outstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

// Dir is a local output folder. Its writes go to a hidden temporary file
// beside the target, fsynced and renamed into place, with the folder
// fsynced after.
type Dir string

func (d Dir) path(name string) string { return filepath.Join(string(d), filepath.FromSlash(name)) }

func joinLocal(dir, name string) string { return filepath.Join(dir, filepath.FromSlash(name)) }

func (d Dir) String() string { return string(d) }

func (d Dir) Close() error { return nil }

func (d Dir) Size(_ context.Context, name string) (int64, error) {
	st, err := os.Stat(d.path(name))
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func (d Dir) Open(_ context.Context, name string) (io.ReadCloser, error) {
	return os.Open(d.path(name))
}

// Create writes name through a hidden temporary file in the same folder,
// named .<stem>-<pid>-<random><ext>, so that a half-written file of a
// killed run is recognisably comfybatch's and is never taken for an
// output. It is not os.CreateTemp: its 0600 would make the file private;
// this one gets the usual 0644 under the umask, like every output.
func (d Dir) Create(_ context.Context, name string) (Writer, error) {
	target := d.path(name)
	dir, base := filepath.Split(target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, errorf("create", name, err)
	}
	ext := filepath.Ext(base)
	stem := strings.TrimSuffix(base, ext)
	var f *os.File
	var err error
	for try := 0; ; try++ {
		tmp := filepath.Join(dir, fmt.Sprintf(".%s-%d-%d%s", stem, os.Getpid(), rand.Int64(), ext))
		f, err = os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil || !errors.Is(err, os.ErrExist) || try == 9 {
			break
		}
	}
	if err != nil {
		return nil, errorf("create", name, err)
	}
	return &dirWriter{f: f, target: target}, nil
}

type dirWriter struct {
	f      *os.File
	target string
}

func (w *dirWriter) Write(p []byte) (int, error) { return w.f.Write(p) }

func (w *dirWriter) Commit() error {
	err := w.f.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(w.f.Name(), w.target)
	}
	if err == nil {
		return SyncDir(filepath.Dir(w.target))
	}
	os.Remove(w.f.Name())
	return fmt.Errorf("write %s: %w", w.target, err)
}

func (w *dirWriter) Abort() {
	w.f.Close()
	os.Remove(w.f.Name())
}

// Move renames src to dst, never over an existing file, and makes both
// folders' entries durable.
func (d Dir) Move(_ context.Context, src, dst string) error {
	from, to := d.path(src), d.path(dst)
	if _, err := os.Stat(to); err == nil {
		return fmt.Errorf("%s is already there", dst)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	if err := os.Rename(from, to); err != nil {
		return err
	}
	if err := SyncDir(filepath.Dir(to)); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(from))
}

// SyncDir makes the entries of a folder durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
