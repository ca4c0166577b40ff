// Package localfile lets a job name a file on this machine where a model's
// input takes a media URL. The manifest turns such a path into a Ref — the
// path as written and the sha256 of the file's bytes — and the Ref is what
// the job's input holds: so the fingerprint covers the file's content
// (editing the file changes the job), and the ledger keeps the path and the
// hash, never the bytes. A Sender turns a Ref into what the request body
// carries, at submit time only: Inline makes a data: URI; an uploader that
// returns a pre-signed URL is another Sender.
package localfile

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Prefix starts every Ref in a job's input.
const Prefix = "local:"

// MaxInlineBody caps the JSON body of a submit that carries files inline
// as data: URIs. It is the cap RunComfy's own partner nodes put on the
// bodies they send with data URIs, the only evidence of what the API
// takes; RunComfy's own file rules (images under 10 MB, audio under 15 MB)
// keep a job with one image and one audio file (about 34 MB encoded)
// within it.
const MaxInlineBody = 64 << 20

// Ref is a local file as a job's input holds it.
type Ref struct {
	Path   string // as the manifest wrote it (slashes), relative to the manifest's folder unless absolute
	SHA256 string // hex sha256 of the bytes the manifest read
}

func (r Ref) String() string { return Prefix + r.Path + "#sha256=" + r.SHA256 }

// Parse reads a Ref back from an input value.
func Parse(s string) (Ref, bool) {
	rest, ok := strings.CutPrefix(s, Prefix)
	if !ok {
		return Ref{}, false
	}
	i := strings.LastIndex(rest, "#sha256=")
	if i <= 0 {
		return Ref{}, false
	}
	r := Ref{Path: rest[:i], SHA256: rest[i+len("#sha256="):]}
	if len(r.SHA256) != 64 {
		return Ref{}, false
	}
	if _, err := hex.DecodeString(r.SHA256); err != nil {
		return Ref{}, false
	}
	return r, true
}

// IsRef reports whether an input value is a Ref.
func IsRef(s string) bool { _, ok := Parse(s); return ok }

// FileField reports whether a field takes a media URL, and so may name a
// local file: RunComfy names those fields *_url, *_urls, *_url_N.
func FileField(field string) bool { return strings.Contains(strings.ToLower(field), "url") }

// IsPath reports whether a value of a FileField names a local file rather
// than a URL: anything but an empty string, a URL with a scheme, a data:
// URI, or a Ref already.
func IsPath(s string) bool {
	t := strings.TrimSpace(s)
	return t != "" && !strings.Contains(t, "://") && !strings.HasPrefix(strings.ToLower(t), "data:") && !IsRef(t)
}

// Abs is where a Ref's file is, for a manifest in dir.
func Abs(dir string, r Ref) string {
	p := filepath.FromSlash(r.Path)
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// Hash reads a file and returns its sha256 and size.
func Hash(path string) (sum string, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", 0, err
	}
	if !st.Mode().IsRegular() {
		return "", 0, errors.New("not a regular file")
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// Use is one Ref in a job's input: its field, and its index in the field's
// list (-1 for a field that holds one value).
type Use struct {
	Field string
	Index int
	Ref   Ref
}

// Refs lists the Refs of an input's top-level fields and their lists.
func Refs(input map[string]any) []Use {
	var out []Use
	for field, v := range input {
		switch x := v.(type) {
		case string:
			if r, ok := Parse(x); ok {
				out = append(out, Use{Field: field, Index: -1, Ref: r})
			}
		case []any:
			for i, e := range x {
				if s, ok := e.(string); ok {
					if r, ok := Parse(s); ok {
						out = append(out, Use{Field: field, Index: i, Ref: r})
					}
				}
			}
		}
	}
	return out
}

// Sender turns a local file into what a submit's body carries in its
// place: a data: URI (Inline), or the URL of a copy the API can fetch (an
// uploader). It is called at submit time, once per file of the job; what it
// returns is sent, never stored. path is the file on this machine.
type Sender interface {
	URL(ctx context.Context, ref Ref, path string) (string, error)
}

// MaxBody is implemented by a Sender whose output counts against the
// submit body's size (Inline): validation refuses a job whose body would
// pass it, before anything is paid.
type MaxBody interface {
	MaxBody() int64
}

// Inline sends each file inside the body as a data: URI, as RunComfy's
// partner nodes do. A model may refuse one; the API documents data URIs
// for its serverless deployments only.
type Inline struct{}

func (Inline) MaxBody() int64 { return MaxInlineBody }

// URL reads the file, checks that it is still the one the manifest read,
// and encodes it.
func (Inline) URL(_ context.Context, ref Ref, path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", ref.Path, err)
	}
	if err := Same(ref, data); err != nil {
		return "", err
	}
	return DataURI(data, path), nil
}

// Same checks that data is the file ref was made from.
func Same(ref Ref, data []byte) error {
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != ref.SHA256 {
		return fmt.Errorf("%s changed since the manifest was read; run again to submit its new content as a changed job", ref.Path)
	}
	return nil
}

// DataURI encodes data as a base64 data: URI of its media type.
func DataURI(data []byte, name string) string {
	mt := MediaType(data, name)
	var b strings.Builder
	b.Grow(len("data:;base64,") + len(mt) + base64.StdEncoding.EncodedLen(len(data)))
	b.WriteString("data:")
	b.WriteString(mt)
	b.WriteString(";base64,")
	b.WriteString(base64.StdEncoding.EncodeToString(data))
	return b.String()
}

// DataURILen is the length of DataURI for a file of size bytes and media
// type mt.
func DataURILen(size int64, mt string) int64 {
	return int64(len("data:;base64,")+len(mt)) + (size+2)/3*4
}

// MediaType names a file's media type from its first bytes, else from its
// name's extension, else application/octet-stream.
func MediaType(head []byte, name string) string {
	if len(head) > 512 {
		head = head[:512]
	}
	mt := http.DetectContentType(head)
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	switch mt {
	case "audio/wave":
		return "audio/wav"
	case "application/octet-stream", "text/plain":
		ext := strings.ToLower(filepath.Ext(name))
		if t, ok := mediaExts[ext]; ok {
			return t
		}
		if byExt := mime.TypeByExtension(ext); byExt != "" {
			if i := strings.IndexByte(byExt, ';'); i >= 0 {
				byExt = byExt[:i]
			}
			return byExt
		}
		return "application/octet-stream"
	}
	return mt
}

// mediaExts name the media types a sniff can miss (an MP3 without tags)
// whatever the system's mime tables hold.
var mediaExts = map[string]string{
	".mp3": "audio/mpeg", ".wav": "audio/wav", ".mp4": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
}

// Head reads the first bytes of a file, enough for MediaType.
func Head(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, 512)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf[:n], nil
}

// Body is the JSON body of input with each Ref replaced by what s makes of
// it, dir being the manifest's folder. An input without Refs is returned as
// it is.
func Body(ctx context.Context, input []byte, dir string, s Sender) ([]byte, error) {
	if !bytes.Contains(input, []byte(`"`+Prefix)) {
		return input, nil
	}
	var in map[string]any
	dec := jsonDecoder(input)
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("decode input: %w", err)
	}
	for _, u := range Refs(in) {
		url, err := s.URL(ctx, u.Ref, Abs(dir, u.Ref))
		if err != nil {
			return nil, err
		}
		if u.Index < 0 {
			in[u.Field] = url
		} else {
			in[u.Field].([]any)[u.Index] = url
		}
	}
	return marshal(in)
}

// Where names a Use for a message: field or field[i].
func (u Use) Where() string {
	if u.Index < 0 {
		return u.Field
	}
	return u.Field + "[" + strconv.Itoa(u.Index) + "]"
}
