package view

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"comfybatch/lifecycle"
	"comfybatch/store"
)

// ledger makes a ledger of n done jobs, each with one file in out, and
// returns the writer (closed with the test).
func ledger(t testing.TB, dir string, n int) (*store.Store, string, string) {
	t.Helper()
	path, out := filepath.Join(dir, "jobs.ledger.db"), filepath.Join(dir, "out")
	os.MkdirAll(out, 0o755)
	st, err := store.Open(path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	specs := make([]store.Spec, n)
	for i := range specs {
		id := fmt.Sprintf("job-%05d", i)
		specs[i] = store.Spec{ID: id, Model: "m", Input: json.RawMessage(fmt.Sprintf(`{"prompt":"p %d","seed":%d}`, i, i)), Fingerprint: id}
	}
	if _, err := st.Sync(ctx, specs); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 64)
	for i, sp := range specs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			cost := 0.25
			name := sp.ID + ".mp4"
			os.WriteFile(filepath.Join(out, name), []byte("x"), 0o644)
			for _, step := range []lifecycle.Step{
				{To: lifecycle.Submitting},
				{To: lifecycle.Queued, RequestID: fmt.Sprintf("req-%d", i)},
				{To: lifecycle.Running},
				{To: lifecycle.Completed, Outputs: []string{"http://127.0.0.1/x.mp4"}, Cost: &cost},
			} {
				if err := st.Apply(ctx, sp.ID, step); err != nil {
					errs <- err
					return
				}
			}
			errs <- st.Apply(ctx, sp.ID, lifecycle.Step{To: lifecycle.Done}, store.File{N: 0, URL: "http://127.0.0.1/x.mp4", Path: name, Bytes: 1, SHA256: "00"})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return st, path, out
}

func get(t *testing.T, h http.Handler, url string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", url, nil)
	r.Host = "127.0.0.1:8765"
	h.ServeHTTP(w, r)
	return w
}

// Only files inside the output folder are served; a key, when set, is
// required for everything.
func TestFilesAndKey(t *testing.T) {
	dir := t.TempDir()
	_, path, out := ledger(t, dir, 2)
	os.WriteFile(filepath.Join(dir, "secret"), []byte("no"), 0o644)
	os.Symlink(filepath.Join(dir, "secret"), filepath.Join(out, "link"))
	os.Symlink("..", filepath.Join(out, "up"))

	srv := New(Config{Ledger: path, OutDir: out})
	defer srv.Close()
	h := srv.Handler()
	for url, want := range map[string]int{
		"/files/job-00000.mp4":  200,
		"/files/link":           404,
		"/files/up/secret":      404,
		"/files/%2e%2e/secret":  404, // the mux cleans it to /secret: no such route
		"/files/..%2fsecret":    404,
		"/files/":               404,
		"/files/up":             404, // not a regular file
		"/api/jobs":             200,
		"/":                     200,
		"/assets/view.js":       200,
		"/files//etc/passwd":    404,
		"/files/job-00001.mp4?": 200,
	} {
		if got := get(t, h, url).Code; got != want && !(want == 404 && (got == 301 || got == 307)) { // a redirect to the cleaned path, which is 404
			t.Errorf("GET %s: %d, want %d", url, got, want)
		}
	}

	keyed := New(Config{Ledger: path, OutDir: out, Key: "k3y"})
	defer keyed.Close()
	kh := keyed.Handler()
	for url, want := range map[string]int{
		"/":                            403,
		"/api/jobs":                    403,
		"/files/job-00000.mp4":         403,
		"/?key=wrong":                  403,
		"/?key=k3y":                    200,
		"/api/jobs?key=k3y":            200,
		"/files/job-00000.mp4?key=k3y": 200,
	} {
		if got := get(t, kh, url).Code; got != want {
			t.Errorf("keyed GET %s: %d, want %d", url, got, want)
		}
	}
}

// A poll with the version the page has reads nothing more; a review
// changes the version.
func TestVersion(t *testing.T) {
	dir := t.TempDir()
	_, path, out := ledger(t, dir, 3)
	srv := New(Config{Ledger: path, OutDir: out})
	defer srv.Close()
	h := srv.Handler()
	var s Snapshot
	json.Unmarshal(get(t, h, "/api/jobs").Body.Bytes(), &s)
	if len(s.Jobs) != 3 || s.Counts["done"] != 3 || s.Version == "" {
		t.Fatalf("snapshot: %+v", s)
	}
	var again Snapshot
	json.Unmarshal(get(t, h, "/api/jobs?since="+s.Version).Body.Bytes(), &again)
	if !again.Unchanged || len(again.Jobs) != 0 {
		t.Fatalf("a poll with the current version: %+v", again)
	}
	w := httptest.NewRecorder()
	post := httptest.NewRequest("POST", "/api/review", strings.NewReader(`{"ids":["job-00001"],"verdict":"accepted","note":"n"}`))
	post.Host = "127.0.0.1:8765"
	post.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(w, post)
	if w.Code != 200 {
		t.Fatalf("review: %d %s", w.Code, w.Body)
	}
	var after Snapshot
	json.Unmarshal(get(t, h, "/api/jobs?since="+s.Version).Body.Bytes(), &after)
	if after.Unchanged || after.Jobs[1].Review == nil || *after.Jobs[1].Review != store.Accepted || after.Jobs[1].Note != "n" {
		t.Fatalf("after a review: %+v", after)
	}
}

// TestPollCost measures what the page's polls cost the ledger at 10,000
// jobs while a writer commits beside them: the reads per second a poll
// where nothing moved allows, and those of a full read. It asserts only
// that both answer; the numbers are for the README (go test -v -run
// TestPollCost ./view/ -pollcost).
func TestPollCost(t *testing.T) {
	if os.Getenv("COMFYBATCH_POLLCOST") == "" {
		t.Skip("set COMFYBATCH_POLLCOST=1 to measure (builds a 10,000-job ledger)")
	}
	dir := t.TempDir()
	st, path, out := ledger(t, dir, 10000)
	srv := New(Config{Ledger: path, OutDir: out})
	defer srv.Close()
	h := srv.Handler()
	// A writer keeps committing events beside the reads, as a run does.
	stop := make(chan struct{})
	var writes atomic.Int64
	ctx := context.Background()
	if _, err := st.Sync(ctx, []store.Spec{{ID: "zz-busy", Model: "m", Input: json.RawMessage(`{}`), Fingerprint: "zz"}}); err != nil {
		t.Fatal(err)
	}
	st.Apply(ctx, "zz-busy", lifecycle.Step{To: lifecycle.Submitting})
	st.Apply(ctx, "zz-busy", lifecycle.Step{To: lifecycle.Queued, RequestID: "req-busy"})
	go func() {
		// Its job goes back and forth between queued and running: every
		// commit is a state change, so every full read sees a new version.
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			to := lifecycle.Running
			if i%2 == 1 {
				to = lifecycle.Queued
			}
			if err := st.Apply(ctx, "zz-busy", lifecycle.Step{To: to}); err != nil {
				t.Error(err)
				return
			}
			writes.Add(1)
		}
	}()
	measure := func(name string, read func() error) {
		start := time.Now()
		n := 0
		for time.Since(start) < 3*time.Second {
			if err := read(); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			n++
		}
		t.Logf("%s: %.0f reads/s (%.2f ms each)", name, float64(n)/time.Since(start).Seconds(), time.Since(start).Seconds()*1000/float64(n))
	}
	w0 := writes.Load()
	t0 := time.Now()
	ro, err := srv.ledger()
	if err != nil {
		t.Fatal(err)
	}
	// What a poll costs when the page is up to date: the version check.
	measure("version check (a poll where nothing moved)", func() error { _, err := srv.version(ctx, ro); return err })
	measure("full read of 10,000 jobs (a poll after a change)", func() error {
		if w := get(t, h, "/api/jobs"); w.Code != 200 {
			return fmt.Errorf("%d", w.Code)
		}
		return nil
	})
	close(stop)
	t.Logf("writer beside them: %.0f commits/s", float64(writes.Load()-w0)/time.Since(t0).Seconds())
}

// Another web site cannot review through the page: not by a form or
// text/plain post, not from another origin, not by rebinding its name to
// loopback.
func TestCrossSiteRefused(t *testing.T) {
	dir := t.TempDir()
	_, path, out := ledger(t, dir, 1)
	srv := New(Config{Ledger: path, OutDir: out})
	defer srv.Close()
	h := srv.Handler()
	body := `{"ids":["job-00000"],"verdict":"rejected"}`
	for _, c := range []struct {
		name, host, ctype, origin string
		want                      int
	}{
		{"text/plain", "127.0.0.1:8765", "text/plain", "", 415},
		{"form", "127.0.0.1:8765", "application/x-www-form-urlencoded", "", 415},
		{"other origin", "127.0.0.1:8765", "application/json", "http://evil.example", 403},
		{"rebound name", "evil.example:8765", "application/json", "http://evil.example:8765", 403},
		{"the page itself", "127.0.0.1:8765", "application/json", "http://127.0.0.1:8765", 200},
	} {
		r := httptest.NewRequest("POST", "/api/review", strings.NewReader(body))
		r.Host = c.host
		r.Header.Set("Content-Type", c.ctype)
		if c.origin != "" {
			r.Header.Set("Origin", c.origin)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, w.Code, strings.TrimSpace(w.Body.String()), c.want)
		}
	}
	reviews, err := store.ReadReviews(context.Background(), path, nil)
	if err != nil || len(reviews) != 1 {
		t.Fatalf("reviews: %v %v; want only the page's own", reviews, err)
	}
	if w := get(t, h, "/api/jobs"); w.Code != 200 {
		t.Fatalf("GET from the page: %d", w.Code)
	}
}
