package runner

// Files that cannot lie, against a hostile file host: each test gives a
// scripted API (every job's request and outputs chosen by the test) and a
// file host that misbehaves one way, and checks what is on disk and in the
// ledger.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"comfybatch/lifecycle"
	"comfybatch/manifest"
	"comfybatch/outstore"
	"comfybatch/runcomfy"
	"comfybatch/store"
)

// scripted is an API whose every submission is created at once and
// finished, with the outputs outputs(prompt, request) gives.
type scripted struct {
	mu      sync.Mutex
	n       int
	byReq   map[string]json.RawMessage
	outputs func(prompt, request string) []string
}

func (s *scripted) Submit(_ context.Context, _ string, input any, o runcomfy.SubmitOptions) (runcomfy.SubmitResponse, error) {
	if o.BeforeSend != nil {
		if err := o.BeforeSend(); err != nil {
			return runcomfy.SubmitResponse{}, &runcomfy.Error{Op: "submit", NotSent: true, Err: err}
		}
	}
	var in struct{ Prompt string }
	b, _ := json.Marshal(input)
	json.Unmarshal(b, &in)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	req := fmt.Sprintf("req-%d", s.n)
	outs := s.outputs(in.Prompt, req)
	key := "videos"
	var out any = outs
	if len(outs) == 1 {
		key, out = "video", outs[0]
	}
	o2, _ := json.Marshal(map[string]any{key: out})
	if s.byReq == nil {
		s.byReq = map[string]json.RawMessage{}
	}
	s.byReq[req] = o2
	return runcomfy.SubmitResponse{RequestID: runcomfy.Scalar(req)}, nil
}

func (s *scripted) Result(_ context.Context, req string) (runcomfy.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return runcomfy.Result{Status: "completed", Output: s.byReq[req], Cost: json.RawMessage(`0.1`)}, nil
}

func jobsManifest(t *testing.T, jobs ...string) *manifest.Manifest {
	t.Helper()
	var b strings.Builder
	b.WriteString("model: m/x\njobs:\n")
	for _, j := range jobs {
		id, prompt, _ := strings.Cut(j, "=")
		fmt.Fprintf(&b, "  - id: %s\n    input: {prompt: %q}\n", id, prompt)
	}
	m, err := manifest.Parse("jobs.yaml", []byte(b.String()), manifest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

type filesEnv struct {
	t      *testing.T
	dir    string
	ledger string
	out    string
	api    *scripted
}

func newFilesEnv(t *testing.T, outputs func(prompt, request string) []string) *filesEnv {
	dir := t.TempDir()
	return &filesEnv{t: t, dir: dir, ledger: filepath.Join(dir, "l.db"), out: filepath.Join(dir, "out"), api: &scripted{outputs: outputs}}
}

func (e *filesEnv) run(m *manifest.Manifest, mod func(*Config)) Summary {
	e.t.Helper()
	st, err := store.Open(e.ledger, store.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	defer st.Close()
	cfg := Config{Manifest: m, Store: st, API: e.api, HTTP: http.DefaultClient, OutDir: e.out, Concurrency: 4,
		PollMax: 20 * time.Millisecond, ProgressEvery: -1, StallTimeout: time.Minute}
	if mod != nil {
		mod(&cfg)
	}
	sum, err := Run(context.Background(), context.Background(), cfg)
	if err != nil {
		e.t.Fatalf("run: %v", err)
	}
	return sum
}

func (e *filesEnv) files() map[string]store.File {
	e.t.Helper()
	st, err := store.Open(e.ledger, store.Options{ReadOnly: true})
	if err != nil {
		e.t.Fatal(err)
	}
	defer st.Close()
	all := map[string]store.File{}
	st.EachFile(context.Background(), func(id string, f store.File) error { all[f.Path] = f; return nil })
	return all
}

// checkDisk: every file the ledger records is on disk with its recorded
// sha256, and the contents are want[path].
func (e *filesEnv) checkDisk(want map[string][]byte) {
	e.t.Helper()
	files := e.files()
	if len(files) != len(want) {
		e.t.Fatalf("the ledger records %d files, want %d: %v", len(files), len(want), keys(files))
	}
	for path, body := range want {
		f, ok := files[path]
		if !ok {
			e.t.Fatalf("no file %s in the ledger (%v)", path, keys(files))
		}
		data, err := os.ReadFile(filepath.Join(e.out, path))
		if err != nil {
			e.t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if !bytes.Equal(data, body) || f.SHA256 != hex.EncodeToString(sum[:]) {
			e.t.Fatalf("%s: %d bytes (ledger sha %s), want the %d bytes served for it", path, len(data), f.SHA256[:8], len(body))
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// 1. A job a with two outputs and a job a_1 with one, and ids that end
// like extensions: no file overwrites another.
func TestOutputNamesCannotCollide(t *testing.T) {
	content := func(name string) []byte { return []byte("bytes of " + name + strings.Repeat(".", 300)) }
	host := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(content(r.URL.Path))
	}))
	defer host.Close()
	e := newFilesEnv(t, func(prompt, req string) []string {
		var outs []string
		for i := range len(prompt) % 3 {
			outs = append(outs, fmt.Sprintf("%s/%s/%d.mp4", host.URL, req, i))
		}
		return outs
	})
	// The prompt's length picks the number of outputs: "xx" two, "x" one.
	m := jobsManifest(t, "a=xx", "a_1=x", "a_2=x", "a.mp4=x")
	e.run(m, nil)
	st, _ := store.Open(e.ledger, store.Options{ReadOnly: true})
	want := map[string][]byte{}
	st.EachJob(context.Background(), func(j store.Job) error {
		if j.State != lifecycle.Done {
			t.Fatalf("job %s is %s", j.ID, j.State)
		}
		for n, u := range j.Outputs {
			want[outPath(j.ID, n, len(j.Outputs), ".mp4")] = content(strings.TrimPrefix(u, host.URL))
		}
		return nil
	})
	st.Close()
	if len(want) != 5 {
		t.Fatalf("%d distinct names for 5 outputs: %v", len(want), keys(want))
	}
	e.checkDisk(want)
}

// fileHost serves each request's output with http.ServeContent (Range,
// If-Range, ETag), and can be told to cut a body short once per path.
type fileHost struct {
	*httptest.Server
	mu      sync.Mutex
	content map[string][]byte // by path
	etag    map[string]string
	cut     map[string]int // cut the next N GETs of this path after half
	ranges  atomic.Int64   // requests that carried a Range header
}

func newFileHost(t *testing.T) *fileHost {
	h := &fileHost{content: map[string][]byte{}, etag: map[string]string{}, cut: map[string]int{}}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		body, etag, cut := h.content[r.URL.Path], h.etag[r.URL.Path], h.cut[r.URL.Path] > 0
		h.cut[r.URL.Path]--
		h.mu.Unlock()
		if r.Header.Get("Range") != "" {
			h.ranges.Add(1)
		}
		if cut {
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			w.Header().Set("ETag", etag)
			w.WriteHeader(http.StatusOK)
			w.Write(body[:len(body)/2])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		if etag != "" {
			w.Header().Set("ETag", etag)
		}
		http.ServeContent(w, r, "x.mp4", time.Time{}, bytes.NewReader(body))
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *fileHost) set(path string, body []byte, etag string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.content[path], h.etag[path] = body, etag
}

// 2. A partial file is continued only for the same request's same output:
// one left by an earlier submission of the job is never resumed onto the
// new request's output, and one whose server file changed (another ETag)
// is started over.
func TestPartialResumesOnlyItsOwnRequest(t *testing.T) {
	host := newFileHost(t)
	body := func(req string) []byte { return bytes.Repeat([]byte(req+"|"), 4000) }
	e := newFilesEnv(t, func(prompt, req string) []string {
		host.set("/"+req+".mp4", body(req), `"`+req+`"`)
		if prompt == "first" {
			host.mu.Lock()
			host.cut["/"+req+".mp4"] = 1000 // every try is cut
			host.mu.Unlock()
		}
		return []string{host.URL + "/" + req + ".mp4"}
	})
	// Run 1: every try of the download is cut: the job stays completed
	// with a partial file on disk.
	if sum := e.run(jobsManifest(t, "a=first"), func(c *Config) { c.Sleep = func(context.Context, time.Duration) error { return nil } }); sum.Counts[lifecycle.Completed] != 1 {
		t.Fatalf("counts %v", sum.Counts)
	}
	parts, _ := filepath.Glob(filepath.Join(e.out, ".a.*.part"))
	if len(parts) != 1 {
		t.Fatalf("partial files after the cut: %v", parts)
	}
	if fi, _ := os.Stat(parts[0]); fi.Size() == 0 || fi.Size() >= int64(len(body("req-1"))) {
		t.Fatalf("the partial file has %d bytes", fi.Size())
	}

	// An earlier ledger's partial file: the ledger is started over, the
	// job submitted again, a new request. Its output must be all its own,
	// never the first request's bytes with the second's tail.
	for _, f := range []string{e.ledger, e.ledger + "-wal", e.ledger + "-shm"} {
		os.Remove(f)
	}
	e.run(jobsManifest(t, "a=second"), nil)
	e.checkDisk(map[string][]byte{"a.mp4": body("req-2")})
	if left, _ := filepath.Glob(filepath.Join(e.out, ".*")); len(left) != 0 {
		t.Fatalf("leftovers: %v", left)
	}
}

// The same request's partial file is resumed with Range and If-Range; when
// the server's file changed meanwhile (another ETag), it is fetched whole.
func TestPartialResumeNeedsTheSameValidator(t *testing.T) {
	for _, changed := range []bool{false, true} {
		t.Run(fmt.Sprint("changed=", changed), func(t *testing.T) {
			host := newFileHost(t)
			old, fresh := bytes.Repeat([]byte("old|"), 5000), bytes.Repeat([]byte("new|"), 5000)
			e := newFilesEnv(t, func(prompt, req string) []string {
				host.set("/v.mp4", old, `"v1"`)
				host.mu.Lock()
				host.cut["/v.mp4"] = 1
				host.mu.Unlock()
				return []string{host.URL + "/v.mp4"}
			})
			ctx, cancel := context.WithCancel(context.Background())
			st, _ := store.Open(e.ledger, store.Options{})
			Run(ctx, ctx, Config{Manifest: jobsManifest(t, "a=x"), Store: st, API: e.api, HTTP: http.DefaultClient, OutDir: e.out,
				PollMax: 20 * time.Millisecond, ProgressEvery: -1, StallTimeout: time.Minute,
				Sleep: func(ctx context.Context, d time.Duration) error { cancel(); return ctx.Err() }})
			st.Close()
			want := old
			if changed {
				host.set("/v.mp4", fresh, `"v2"`)
				want = fresh
			}
			before := host.ranges.Load()
			e.run(jobsManifest(t, "a=x"), nil)
			e.checkDisk(map[string][]byte{"a.mp4": want})
			if host.ranges.Load() == before {
				t.Fatalf("the partial file was not offered for resuming")
			}
		})
	}
}

// 3. A body with no Content-Length that a closed connection cuts short is
// not recorded done; when the host later behaves, the file is whole.
// closeDelimited answers 200 with body and no length nor chunking: the end
// of the body is the connection's close, which proves nothing.
func closeDelimited(t *testing.T, w http.ResponseWriter, body []byte) {
	conn, buf, err := w.(http.Hijacker).Hijack()
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close()
	buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nConnection: close\r\n\r\n")
	buf.Write(body)
	buf.Flush()
}

func TestShortBodyWithoutLengthIsNotDone(t *testing.T) {
	full := bytes.Repeat([]byte("frame|"), 3000)
	var lying atomic.Bool
	lying.Store(true)
	host := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !lying.Load() {
			http.ServeContent(w, r, "x.mp4", time.Time{}, bytes.NewReader(full))
			return
		}
		// Close-delimited: no length, no chunking; half the file, then
		// the connection closes. Ranges are not understood.
		closeDelimited(t, w, full[:len(full)/2])
	}))
	defer host.Close()
	e := newFilesEnv(t, func(prompt, req string) []string { return []string{host.URL + "/x.mp4"} })
	sum := e.run(jobsManifest(t, "a=x"), nil)
	if sum.Counts[lifecycle.Done] != 0 || sum.Counts[lifecycle.Completed] != 1 {
		t.Fatalf("counts %v: an unproven file was recorded done", sum.Counts)
	}
	if _, err := os.Stat(filepath.Join(e.out, "a.mp4")); err == nil {
		t.Fatal("an unproven file is under its final name")
	}
	lying.Store(false)
	e.run(jobsManifest(t, "a=x"), nil)
	e.checkDisk(map[string][]byte{"a.mp4": full})
}

// 7. A file host that sends headers and then nothing is abandoned after the
// stall timeout and the download resumed, instead of hanging the run.
func TestStalledDownloadIsAbandoned(t *testing.T) {
	full := bytes.Repeat([]byte("frame|"), 3000)
	var stalls atomic.Int64
	release := make(chan struct{})
	defer close(release)
	host := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if stalls.Add(1) == 1 {
			w.Header().Set("Content-Length", fmt.Sprint(len(full)))
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			select { // headers, then nothing
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		http.ServeContent(w, r, "x.mp4", time.Time{}, bytes.NewReader(full))
	}))
	defer host.Close()
	e := newFilesEnv(t, func(prompt, req string) []string { return []string{host.URL + "/x.mp4"} })
	start := time.Now()
	e.run(jobsManifest(t, "a=x"), func(c *Config) { c.StallTimeout = 300 * time.Millisecond })
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("took %v", took)
	}
	e.checkDisk(map[string][]byte{"a.mp4": full})
	if stalls.Load() < 2 {
		t.Fatal("the stalled download was not abandoned and tried again")
	}
}

// A host that sends a file slowly but steadily is not abandoned: each
// byte that comes pushes the stall deadline back (found in review: nothing
// failed when only the first byte did).
func TestSlowSteadyDownloadIsNotAbandoned(t *testing.T) {
	const (
		stall  = 200 * time.Millisecond
		pieces = 10
		every  = stall / 4 // the whole body takes 2.5 stall timeouts
	)
	full := bytes.Repeat([]byte("frame|"), 3000)
	var gets atomic.Int64
	host := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gets.Add(1)
		w.Header().Set("Content-Length", fmt.Sprint(len(full)))
		w.WriteHeader(http.StatusOK)
		n := len(full) / pieces
		for i := range pieces {
			end := (i + 1) * n
			if i == pieces-1 {
				end = len(full)
			}
			if _, err := w.Write(full[i*n : end]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(every)
		}
	}))
	defer host.Close()
	e := newFilesEnv(t, func(prompt, req string) []string { return []string{host.URL + "/x.mp4"} })
	e.run(jobsManifest(t, "a=x"), func(c *Config) { c.StallTimeout = stall })
	e.checkDisk(map[string][]byte{"a.mp4": full})
	if n := gets.Load(); n != 1 {
		t.Fatalf("%d requests for one steady download: it was abandoned as stalled", n)
	}
}

// Every request to a file host asks for the file as it is stored
// (Accept-Encoding: identity): the download and the request that proves a
// length-less body whole. Else Go's transport would ask for gzip and undo
// it, and the length and ranges the host speaks of would be of other bytes.
func TestFileRequestsAskForTheBytesAsStored(t *testing.T) {
	full := bytes.Repeat([]byte("frame|"), 3000)
	var mu sync.Mutex
	var seen []string
	host := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.Header.Get("Range")+" "+r.Header.Get("Accept-Encoding"))
		mu.Unlock()
		if r.Header.Get("Range") != "" {
			http.ServeContent(w, r, "x.mp4", time.Time{}, bytes.NewReader(full))
			return
		}
		// Close-delimited, no length: the proof is asked for.
		closeDelimited(t, w, full)
	}))
	defer host.Close()
	e := newFilesEnv(t, func(prompt, req string) []string { return []string{host.URL + "/x.mp4"} })
	e.run(jobsManifest(t, "a=x"), nil)
	// Proven by the host's 416 "bytes */18000" (found in review: a 416's
	// Content-Range was not understood, so no such file was ever done).
	e.checkDisk(map[string][]byte{"a.mp4": full})
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 {
		t.Fatalf("requests %q, want the download and its length proof", seen)
	}
	for _, r := range seen {
		if !strings.HasSuffix(r, " identity") {
			t.Errorf("request %q does not ask for the stored bytes", r)
		}
	}
}

func TestParseContentRange(t *testing.T) {
	for _, tt := range []struct {
		in           string
		start, total int64
		ok           bool
	}{
		{"bytes 0-99/100", 0, 100, true},
		{"bytes 50-99/100", 50, 100, true},
		{"bytes 50-99/*", 50, -1, true},
		{"bytes */100", -1, 100, true}, // a 416's
		{"bytes */0", -1, 0, true},
		{"bytes */*", 0, 0, false},
		{"bytes */-1", 0, 0, false},
		{"bytes */abc", 0, 0, false},
		{"bytes 50/100", 0, 0, false},
		{"bytes x-99/100", 0, 0, false},
		{"items 0-9/10", 0, 0, false},
		{"", 0, 0, false},
	} {
		start, total, ok := parseContentRange(tt.in)
		if ok != tt.ok || (ok && (start != tt.start || total != tt.total)) {
			t.Errorf("parseContentRange(%q) = %d, %d, %v; want %d, %d, %v", tt.in, start, total, ok, tt.start, tt.total, tt.ok)
		}
	}
}

var _ = net.Dial

// The no-op stamp names a build of comfybatch by its Go build ID, read from
// the ELF note in a few kilobytes, not by hashing a 75 MB binary: the ID is
// the one the toolchain reports.
func TestGoBuildIDOfThisBinary(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	id, err := goBuildID(exe)
	if err != nil {
		t.Skipf("no Go build ID note here (%v): the stamp hashes the bytes instead", err)
	}
	out, err := exec.Command("go", "tool", "buildid", exe).Output()
	if err != nil {
		t.Skipf("go tool buildid: %v", err)
	}
	if want := strings.TrimSpace(string(out)); id != want {
		t.Fatalf("goBuildID = %q, go tool buildid says %q", id, want)
	}
	if _, err := goBuildID(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Fatal("a missing file has a build ID")
	}
}

// sizeFails is an output store whose every look fails as a bucket's 503
// does: nothing says the files are gone.
type sizeFails struct{ outstore.Store }

func (sizeFails) Size(context.Context, string) (int64, error) {
	return 0, errors.New("503 SlowDown")
}

// A store that cannot be looked at is not taken for one whose files are
// gone: keeping an earlier result fails, instead of leaving the paid file at
// its live name for the next download to overwrite, and restoring one
// fails, instead of calling the job's kept result lost.
func TestHistoryLookFailureIsNotGone(t *testing.T) {
	k := keeper{ctx: context.Background(), out: sizeFails{}}
	f := store.File{Path: "a.mp4", Bytes: 3, SHA256: "x"}
	if kept, err := k.Archive("a", "req-1", []store.File{f}); err == nil {
		t.Fatalf("Archive on a failing store = %v, nil; want an error", kept)
	}
	if _, whole, err := k.Restore("a", []store.File{{Path: "_history/a/req-1/a.mp4", Bytes: 3, SHA256: "x"}}); err == nil {
		t.Fatalf("Restore on a failing store: whole %v, nil error; want an error", whole)
	}
}
