package runner

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"comfybatch/store"
)

// A host that ignores If-Range: it answers Range with 206 from a changed
// file, under the changed file's ETag. The 206's ETag differs from the one
// sent in If-Range, which proves the tail is another file's.
func TestHostIgnoringIfRangeIsNotSpliced(t *testing.T) {
	old, fresh := bytes.Repeat([]byte("old|"), 5000), bytes.Repeat([]byte("new|"), 5000)
	var phase, seen, offered atomic.Int32
	host := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if phase.Load() == 0 {
			seen.Add(1)
			w.Header().Set("Content-Length", fmt.Sprint(len(old)))
			w.Header().Set("ETag", `"v1"`)
			w.WriteHeader(200)
			w.Write(old[:len(old)/2])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		if r.Header.Get("Range") != "" && r.Header.Get("If-Range") == `"v1"` {
			offered.Add(1)
		}
		w.Header().Set("ETag", `"v2"`)
		if rg := r.Header.Get("Range"); rg != "" {
			start, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"))
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(fresh)-1, len(fresh)))
			w.Header().Set("Content-Length", fmt.Sprint(len(fresh)-start))
			w.WriteHeader(206)
			w.Write(fresh[start:])
			return
		}
		w.Write(fresh)
	}))
	defer host.Close()
	e := newFilesEnv(t, func(prompt, req string) []string { return []string{host.URL + "/v.mp4"} })
	ctx, cancel := context.WithCancel(context.Background())
	st, _ := store.Open(e.ledger, store.Options{})
	Run(ctx, ctx, Config{Manifest: jobsManifest(t, "a=x"), Store: st, API: e.api, HTTP: http.DefaultClient, OutDir: e.out,
		PollMax: 20 * time.Millisecond, ProgressEvery: -1, StallTimeout: time.Minute,
		Sleep: func(ctx context.Context, d time.Duration) error {
			if seen.Load() == 0 {
				return nil
			}
			cancel()
			return ctx.Err()
		}})
	st.Close()
	phase.Store(1)
	e.run(jobsManifest(t, "a=x"), nil)
	e.checkDisk(map[string][]byte{"a.mp4": fresh})
	// The partial file was offered for resuming, tied to its validator:
	// what the test proves is that the host's other tail was refused.
	if offered.Load() == 0 {
		t.Fatal("the partial file was never offered for resuming with If-Range")
	}
}
