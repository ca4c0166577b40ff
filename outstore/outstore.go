// Package outstore is where a run's output files go: a local folder (Dir)
// or a bucket (Bucket: S3, Google Cloud Storage, Azure Blob Storage, and
// file:// for tests, through gocloud.dev/blob).
//
// Its invariant is the runner's: a file is visible under its name only
// whole. A Writer shows nothing until Commit returns nil; Abort, an error,
// or a cancelled context leaves what was there before. For a bucket the
// object is created by the service only when the upload completes; a
// multipart upload that is not completed leaves no object.
//
// Credentials for a bucket come from each cloud's own standard chain
// (environment, shared profile, workload identity, application default
// credentials); this package never reads, stores, logs or prints them.
package outstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"strings"
)

// Store is a place output files are written to, named by slash-separated
// paths relative to it.
type Store interface {
	// Size is the size of the file name; an error wrapping
	// fs.ErrNotExist when there is none.
	Size(ctx context.Context, name string) (int64, error)
	// Open reads the file name.
	Open(ctx context.Context, name string) (io.ReadCloser, error)
	// Create starts writing the file name (its folders are made as
	// needed). Nothing shows under name until Commit returns nil.
	Create(ctx context.Context, name string) (Writer, error)
	// Move renames the file src to dst, never over an existing file.
	Move(ctx context.Context, src, dst string) error
	// Close releases the store's connections.
	Close() error
	// String is where the store is, as the user wrote it.
	String() string
}

// Writer is a file being written. Exactly one of Commit and Abort must be
// called.
type Writer interface {
	io.Writer
	// Commit makes the file visible under its name, whole, and durable.
	Commit() error
	// Abort drops what was written; the name keeps what it had.
	Abort()
}

// schemes are the bucket URL schemes Open knows.
var schemes = map[string]bool{"s3": true, "gs": true, "azblob": true, "file": true}

// IsURL reports whether location is a bucket URL rather than a folder:
// it has a scheme and "://". Open says whether the scheme is one it knows.
func IsURL(location string) bool {
	scheme, _, ok := strings.Cut(location, "://")
	return ok && scheme != "" && !strings.ContainsAny(scheme, `/\.`)
}

// Open opens location: a bucket when it is a URL (IsURL), else the local
// folder it names. Opening a bucket reaches no network: the first read or
// write does.
func Open(ctx context.Context, location string) (Store, error) {
	if !IsURL(location) {
		return Dir(location), nil
	}
	return OpenBucket(ctx, location)
}

// ErrNotExist reports whether err says a file is missing.
func ErrNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// Join is the location of name under location, for people to read: a
// bucket URL's path, or a local path.
func Join(location, name string) string {
	if !IsURL(location) {
		return joinLocal(location, name)
	}
	u, err := url.Parse(location)
	if err != nil {
		return strings.TrimRight(location, "/") + "/" + name
	}
	u.Path = strings.TrimRight(u.Path, "/") + "/" + name
	u.RawQuery = "" // endpoint and region options are not part of the name
	return u.String()
}

func errorf(op, name string, err error) error { return fmt.Errorf("%s %s: %w", op, name, err) }
