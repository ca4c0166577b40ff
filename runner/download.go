package runner

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"comfybatch/lifecycle"
	"comfybatch/outstore"
	"comfybatch/runcomfy"
	"comfybatch/store"
)

// downloadAttempts bounds the tries for one file in one run; what is left
// partial resumes with Range on the next try or the next run.
const downloadAttempts = 6

// errExpired marks an output URL that answered 403, 404 or 410: output URLs
// expire, and the result endpoint hands out fresh ones.
var errExpired = errors.New("output URL expired or forbidden")

// dlError is a failed download attempt; transient ones are tried again.
type dlError struct {
	transient bool
	err       error
}

func (e *dlError) Error() string { return e.err.Error() }
func (e *dlError) Unwrap() error { return e.err }

func transientf(format string, args ...any) error {
	return &dlError{transient: true, err: fmt.Errorf(format, args...)}
}

// download saves every output of a completed job, verifies and records each
// file, and marks the job done. A failure leaves the job completed: the next
// run downloads it from its saved outputs without resubmitting. Downloads
// stop at the first signal; what is partial resumes next time.
func (r *run) download(j store.Job) error {
	ctx := r.intake
	if len(j.Outputs) == 0 {
		// lifecycle.Poll never completes a job without outputs; a ledger
		// that says otherwise is left for a person to look at.
		r.log.Warn("completed job without outputs in the ledger; it is left completed", "job", j.ID)
		return nil
	}
	refreshed := false
	for n := 0; n < len(j.Outputs); n++ {
		f, err := r.saveOutput(ctx, output{id: j.ID, request: j.RequestID, n: n, count: len(j.Outputs)}, j.Outputs[n])
		if errors.Is(err, errExpired) && !refreshed {
			refreshed = true
			outs, rerr := r.refresh(ctx, j)
			if rerr == nil {
				if len(outs) != len(j.Outputs) {
					n = -1 // a different number of outputs renames them all
				} else {
					n--
				}
				j.Outputs = outs
				continue
			}
			err = fmt.Errorf("%w; refreshing it failed: %v", err, rerr)
		}
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("download failed; the job stays completed and the next run downloads it again", "job", j.ID, "output", clipOutput(j.Outputs[n]), "error", err)
			}
			return nil
		}
		if n == len(j.Outputs)-1 {
			// The last file and the move to done, in one write.
			return r.cfg.Store.Apply(r.work, j.ID, lifecycle.Step{To: lifecycle.Done}, f)
		}
		if err := r.cfg.Store.FileSaved(r.work, j.ID, f); err != nil {
			return err
		}
	}
	return nil // not reached: the last file returns above
}

// clipOutput keeps a data: URL or a long text out of a log line.
func clipOutput(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}

// output names one output of one job's request.
type output struct {
	id, request string
	n, count    int // 0-based index, and how many the job has
}

// part is the hidden file an output is written to before it is whole. Its
// name carries a hash of the request id, so a partial file is only ever
// continued for the same request's same output: one left by an earlier
// submission of the job (or by another ledger) is never resumed onto this
// one. Names start with a dot, which no job id can, so they never collide
// with an output.
func (o output) part() string {
	h := sha256.Sum256([]byte(o.request))
	return fmt.Sprintf(".%s.%s.%d.part", o.id, hex.EncodeToString(h[:6]), o.n+1)
}

// name is the output's file name (outPath).
func (o output) name(ext string) string { return outPath(o.id, o.n, o.count, ext) }

// saveOutput saves output n of a job: an URL is downloaded, a data: URL
// decoded, a text written as it is.
func (r *run) saveOutput(ctx context.Context, o output, out string) (store.File, error) {
	switch lifecycle.KindOf(out) {
	case lifecycle.OutputData:
		data, mediaType, err := decodeDataURL(out)
		if err != nil {
			return store.File{}, fmt.Errorf("output %d: %w", o.n+1, err)
		}
		if r.bucket {
			return r.putBytes(ctx, o, extension("", mediaType), "data:"+mediaType, data)
		}
		return r.saveBytes(o, extension("", mediaType), "data:"+mediaType, data)
	case lifecycle.OutputText:
		if r.bucket {
			return r.putBytes(ctx, o, ".txt", "text", []byte(out))
		}
		return r.saveBytes(o, ".txt", "text", []byte(out))
	}
	return r.fetchFile(ctx, o, out)
}

// saveBytes writes an output that came inside the result, the same way a
// download is written: a temporary file, fsynced, renamed into place.
func (r *run) saveBytes(o output, ext, source string, data []byte) (store.File, error) {
	part := filepath.Join(r.cfg.OutDir, o.part())
	if err := os.WriteFile(part, data, 0o644); err != nil {
		return store.File{}, err
	}
	f, err := os.Open(part)
	if err != nil {
		return store.File{}, err
	}
	serr := f.Sync()
	f.Close()
	if serr != nil {
		return store.File{}, serr
	}
	name := o.name(ext)
	if err := r.place(part, name, ""); err != nil {
		return store.File{}, err
	}
	sum := sha256.Sum256(data)
	return store.File{N: o.n, URL: source, Path: name, Bytes: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}, nil
}

// decodeDataURL reads "data:[<mediatype>][;base64],<data>" (RFC 2397).
func decodeDataURL(s string) (data []byte, mediaType string, err error) {
	head, payload, ok := strings.Cut(s[len("data:"):], ",")
	if !ok {
		return nil, "", errors.New("data: URL without a comma")
	}
	params := strings.Split(head, ";")
	mediaType = strings.ToLower(strings.TrimSpace(params[0]))
	b64 := len(params) > 1 && strings.EqualFold(strings.TrimSpace(params[len(params)-1]), "base64")
	if b64 {
		payload = strings.Map(func(r rune) rune {
			if r == ' ' || r == '\n' || r == '\r' || r == '\t' {
				return -1
			}
			return r
		}, payload)
		if data, err = base64.StdEncoding.DecodeString(payload); err != nil {
			if data, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(payload, "=")); err != nil {
				return nil, "", fmt.Errorf("data: URL: %w", err)
			}
		}
		return data, mediaType, nil
	}
	text, err := url.PathUnescape(payload)
	if err != nil {
		return nil, "", fmt.Errorf("data: URL: %w", err)
	}
	return []byte(text), mediaType, nil
}

// refresh fetches the job's result again for fresh output URLs.
func (r *run) refresh(ctx context.Context, j store.Job) ([]string, error) {
	res, err := r.cfg.API.Result(ctx, j.RequestID)
	if err != nil {
		return nil, err
	}
	outs := lifecycle.Outputs(res.Output)
	if len(outs) == 0 {
		return nil, fmt.Errorf("the result of %s no longer lists outputs", j.RequestID)
	}
	if err := r.cfg.Store.Apply(r.work, j.ID, lifecycle.Step{To: lifecycle.Completed, Outputs: outs, Detail: "output URLs refreshed"}); err != nil {
		return nil, err
	}
	return outs, nil
}

// fetchFile tries one output file a few times, resuming what is already on
// disk for the same request and output; to a bucket, each try streams the
// file from its first byte.
func (r *run) fetchFile(ctx context.Context, o output, rawURL string) (store.File, error) {
	once := r.fetchOnce
	if r.bucket {
		once = r.streamOnce
	}
	var last error
	for attempt := 0; attempt < downloadAttempts; attempt++ {
		if attempt > 0 {
			if err := r.cfg.Sleep(ctx, runcomfy.Backoff(attempt-1, 250*time.Millisecond, 10*time.Second, rand.Float64())); err != nil {
				return store.File{}, err
			}
		}
		f, err := once(ctx, o, rawURL)
		if err == nil {
			return f, nil
		}
		last = err
		var de *dlError
		if ctx.Err() != nil || !errors.As(err, &de) || !de.transient {
			return store.File{}, err
		}
	}
	return store.File{}, last
}

// resumeWorth is the size past which a download's validator is kept from
// its first byte, so that it resumes even after the process is killed.
const resumeWorth = 8 << 20

// validatorFile keeps, beside a partial file, the server's validator for the
// bytes in it (a strong ETag, else Last-Modified): a partial file is
// continued only with If-Range on it, so a server whose file changed sends
// it whole instead of a tail that belongs to another.
func validatorFile(part string) string { return part + ".validator" }

// outputURL parses an output URL and holds it to the rule for input URLs
// (SPEC §6): https, or http on loopback.
func outputURL(rawURL string) (*url.URL, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("output URL %q: %w", rawURL, err)
	}
	if err := runcomfy.CheckURL(rawURL); err != nil {
		return nil, fmt.Errorf("output URL: %w", err)
	}
	return u, nil
}

// hostError is what a file host's answer other than the file means: an
// expired URL (the result is fetched again for a fresh one), a transient
// failure (tried again), or a failure.
func hostError(rawURL string, code int) error {
	switch {
	case code == http.StatusForbidden || code == http.StatusNotFound || code == http.StatusGone:
		return fmt.Errorf("download %s: HTTP %d: %w", rawURL, code, errExpired)
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		return transientf("download %s: HTTP %d", rawURL, code)
	}
	return fmt.Errorf("download %s: HTTP %d", rawURL, code)
}

// fetchOnce downloads into the output's hidden partial file, resuming it
// with Range and If-Range when it exists and its validator is known, checks
// that the body is provably whole, fsyncs, and renames it into place: a
// file under its final name is always whole.
func (r *run) fetchOnce(ctx context.Context, o output, rawURL string) (store.File, error) {
	u, err := outputURL(rawURL)
	if err != nil {
		return store.File{}, err
	}
	part := filepath.Join(r.cfg.OutDir, o.part())
	r.files.entries.Lock()
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o644)
	r.files.entries.Unlock()
	if err != nil {
		return store.File{}, err
	}
	defer f.Close()
	h := sha256.New()
	have, err := io.Copy(h, f) // hash what an earlier try left
	if err != nil {
		return store.File{}, err
	}
	validator := ""
	// startOver drops what is on disk, and the validator that vouched for
	// it, so that nothing of another version of the file is kept.
	startOver := func() error {
		if validator != "" {
			os.Remove(validatorFile(part))
			validator = ""
		}
		have = 0
		return restart(f, h)
	}
	if have > 0 {
		if b, err := os.ReadFile(validatorFile(part)); err == nil {
			validator = strings.TrimSpace(string(b))
		}
		if validator == "" {
			// Nothing proves these bytes are the server's current file:
			// start over rather than splice.
			if err := startOver(); err != nil {
				return store.File{}, err
			}
		}
	}

	// A stalled file host (headers, then nothing) is abandoned after
	// StallTimeout without a byte, and the download resumed.
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return store.File{}, err
	}
	// The bytes as stored, never re-encoded on the way: lengths and
	// ranges then count the same bytes that are written.
	req.Header.Set("Accept-Encoding", "identity")
	if have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
		req.Header.Set("If-Range", validator)
	}
	stall := time.AfterFunc(r.cfg.StallTimeout, func() { cancel(errStalled) })
	defer stall.Stop()
	resp, err := r.cfg.HTTP.Do(req)
	if err != nil {
		return store.File{}, transientf("download %s: %w", rawURL, stalledOr(rctx, err))
	}
	defer resp.Body.Close()

	total := int64(-1)
	switch code := resp.StatusCode; {
	case code == http.StatusOK:
		// The server sends the whole file: start over.
		if have > 0 {
			if err := startOver(); err != nil {
				return store.File{}, err
			}
		}
		total = resp.ContentLength
	case code == http.StatusPartialContent:
		start, size, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if have > 0 && strongValidator(resp.Header) != validator {
			// A host that ignores If-Range sends the tail of whatever it
			// has now: without its validator matching ours, the tail is
			// not known to belong to the bytes on disk.
			startOver()
			return store.File{}, transientf("download %s: a partial answer for another version of the file; starting over", rawURL)
		}
		if !ok || start != have {
			startOver()
			return store.File{}, transientf("download %s: unusable Content-Range %q; starting over", rawURL, resp.Header.Get("Content-Range"))
		}
		total = size
	case code == http.StatusRequestedRangeNotSatisfiable:
		startOver()
		return store.File{}, transientf("download %s: range not satisfiable; starting over", rawURL)
	default:
		return store.File{}, hostError(rawURL, code)
	}
	// The validator is written beside the partial file when a download is
	// left partial, or up front for a large one (a kill -9 or a power cut
	// leaves no chance to write it later, and a large file is worth
	// resuming): a small whole one never needs it, and every entry made in
	// the output folder costs its lock (outFiles).
	if v := strongValidator(resp.Header); v != "" && v != validator && total > resumeWorth {
		r.files.entries.Lock()
		os.WriteFile(validatorFile(part), []byte(v), 0o644)
		r.files.entries.Unlock()
		validator = v
	}
	keepPartial := func() {
		r.files.entries.Lock()
		defer r.files.entries.Unlock()
		// Whatever this try did not read (a validator is read only beside
		// bytes already kept) may vouch for another version: without a
		// strong validator of this answer's, none stays.
		if v := strongValidator(resp.Header); v != "" {
			os.WriteFile(validatorFile(part), []byte(v), 0o644)
		} else {
			os.Remove(validatorFile(part))
		}
	}

	if _, err := f.Seek(have, io.SeekStart); err != nil {
		return store.File{}, err
	}
	body := &stallReader{r: resp.Body, timer: stall, after: r.cfg.StallTimeout}
	written, err := io.Copy(io.MultiWriter(f, h), body)
	size := have + written
	if err != nil {
		keepPartial()
		return store.File{}, transientf("download %s: cut off after %d bytes: %w", rawURL, size, stalledOr(rctx, err))
	}
	switch {
	case total >= 0 && size != total:
		keepPartial()
		return store.File{}, transientf("download %s: got %d of %d bytes", rawURL, size, total)
	case total < 0 && !delimited(resp):
		// The body ended when the connection closed, which is also what
		// a cut looks like: ask the server how big the file is before
		// calling it whole.
		if err := r.proveSize(ctx, rawURL, size); err != nil {
			return store.File{}, err
		}
	}
	if err := f.Sync(); err != nil {
		return store.File{}, err
	}
	if err := f.Close(); err != nil {
		return store.File{}, err
	}
	name := o.name(extension(u.Path, resp.Header.Get("Content-Type")))
	if err := r.place(part, name, validator); err != nil {
		return store.File{}, err
	}
	return store.File{N: o.n, URL: rawURL, Path: name, Bytes: size, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// place renames a whole partial file to its output name (with its
// validator file, when it has one, removed) and makes the rename durable.
func (r *run) place(part, name, validator string) error {
	r.files.entries.Lock()
	err := os.Rename(part, filepath.Join(r.cfg.OutDir, name))
	if err == nil && validator != "" {
		os.Remove(validatorFile(part))
	}
	r.files.entries.Unlock()
	if err != nil {
		return err
	}
	return r.files.syncDir(r.cfg.OutDir)
}

// errStalled is the cause of a download abandoned for sending nothing.
var errStalled = errors.New("the file host sent nothing for too long")

func stalledOr(ctx context.Context, err error) error {
	if errors.Is(context.Cause(ctx), errStalled) {
		return fmt.Errorf("%w (%v)", errStalled, err)
	}
	return err
}

// stallReader pushes the stall deadline back on every read that brings
// bytes.
type stallReader struct {
	r     io.Reader
	timer *time.Timer
	after time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.timer.Reset(s.after)
	}
	return n, err
}

// delimited reports a body whose end the protocol marks, so that a cut
// shows as an error rather than as a short file: chunked encoding's last
// chunk, or HTTP/2's end of stream.
func delimited(resp *http.Response) bool {
	if resp.ProtoMajor >= 2 {
		return true
	}
	for _, te := range resp.TransferEncoding {
		if strings.EqualFold(te, "chunked") {
			return true
		}
	}
	return false
}

// strongValidator is the header a resumed download may be tied to with
// If-Range: a strong ETag, else Last-Modified.
func strongValidator(h http.Header) string {
	if et := h.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
		return et
	}
	return h.Get("Last-Modified")
}

// proveSize asks the file host whether the file is size bytes long, with a
// range that starts at its end: a 416 naming the full length, or a 206
// naming it, is proof. Anything else leaves the file unproven, and the job
// completed for the next run to try again.
func (r *run) proveSize(ctx context.Context, rawURL string, size int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-", size))
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := r.cfg.HTTP.Do(req)
	if err != nil {
		return transientf("download %s: the body had no length, and asking for it failed: %w", rawURL, err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusRequestedRangeNotSatisfiable || resp.StatusCode == http.StatusPartialContent {
		if _, total, ok := parseContentRange(resp.Header.Get("Content-Range")); ok && total == size {
			return nil
		}
	}
	return fmt.Errorf("download %s: the server sent %d bytes without a length and will not say how long the file is, so it cannot be proven whole; it is not recorded done", rawURL, size)
}

func restart(f *os.File, h interface{ Reset() }) error {
	h.Reset()
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.Seek(0, io.SeekStart)
	return err
}

// parseContentRange reads "bytes START-END/TOTAL" (TOTAL may be "*"), or a
// 416's "bytes */TOTAL", whose start is -1.
func parseContentRange(v string) (start, total int64, ok bool) {
	v, found := strings.CutPrefix(v, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(v, "/")
	if !found {
		return 0, 0, false
	}
	if rng == "*" { // a 416's "bytes */length": no range, only the length
		total, err := strconv.ParseInt(tot, 10, 64)
		return -1, total, err == nil && total >= 0
	}
	s, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(s, 10, 64)
	total = -1
	if tot != "*" {
		var err error
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return start, total, err1 == nil
}

var typeExt = map[string]string{
	"video/mp4": ".mp4", "video/webm": ".webm", "video/quicktime": ".mov",
	"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif",
	"audio/mpeg": ".mp3", "audio/wav": ".wav", "audio/x-wav": ".wav",
}

// extension picks a file extension from the URL path, else the Content-Type,
// else .bin. Only short alphanumeric extensions are taken from a URL, so a
// server cannot steer the file name.
func extension(urlPath, contentType string) string {
	if ext := strings.ToLower(path.Ext(urlPath)); len(ext) > 1 && len(ext) <= 9 && alnum(ext[1:]) {
		return ext
	}
	if mt, _, err := mime.ParseMediaType(contentType); err == nil {
		if ext, ok := typeExt[mt]; ok {
			return ext
		}
		if exts, _ := mime.ExtensionsByType(mt); len(exts) > 0 && alnum(exts[0][1:]) {
			return exts[0]
		}
	}
	return ".bin"
}

func alnum(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}

// outFiles is what the workers share about the output folder.
//
// Creating and renaming entries of one directory takes the kernel's lock on
// it, and on this kind of machine 64 workers contending for that lock spin
// more CPU than the rest of a run uses: one mutex here makes them queue
// instead. And a directory fsync makes durable every rename done before it
// started, so workers share them: a worker waits for one fsync that began
// after its rename, not for one of its own. The zero value is ready to use.
type outFiles struct {
	entries sync.Mutex // held while creating or renaming an entry

	mu      sync.Mutex
	started uint64        // directory fsyncs begun
	done    uint64        // directory fsyncs ended
	err     error         // the result of the latest one to end
	wake    chan struct{} // closed when the running fsync ends; nil when none runs
}

// syncDir returns once a directory fsync that started after the call has
// ended, with its result (or that of a later one, which covers as much).
func (o *outFiles) syncDir(dir string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	want := o.started + 1 // one running now may have begun before our rename
	for o.done < want {
		if wake := o.wake; wake != nil {
			o.mu.Unlock()
			<-wake
			o.mu.Lock()
			continue
		}
		o.started++
		gen, wake := o.started, make(chan struct{})
		o.wake = wake
		o.mu.Unlock()
		err := outstore.SyncDir(dir)
		o.mu.Lock()
		o.done, o.err, o.wake = gen, err, nil
		close(wake)
	}
	return o.err
}
