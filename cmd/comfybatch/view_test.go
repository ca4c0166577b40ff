package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"comfybatch/runcomfy/runcomfytest"
	"comfybatch/store"
)

// chromium finds Debian's chromium. Without one the browser tests skip,
// except in CI (CI=true), where a missing browser is a failure: .ci/run
// installs it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no chromium binary on PATH, and CI=true: the browser tests must run in CI (apt-get install -y chromium; .ci/run does)")
	}
	t.Skip("no chromium binary on PATH: the browser tests need Debian's chromium (apt-get install -y chromium)")
	return ""
}

// browser starts headless chromium for the test.
func browser(t *testing.T) context.Context {
	t.Helper()
	exe := chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.WindowSize(1280, 900),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(cancel3)
	return ctx
}

// startView runs `comfybatch view` as a process and returns its address.
func startView(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(binPath, append([]string{"view"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	line, err := bufio.NewReader(stderr).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "serving http://") {
		t.Fatalf("view's first line: %q, %v", line, err)
	}
	go io.Copy(io.Discard, stderr)
	return strings.TrimSpace(strings.TrimPrefix(line, "serving "))
}

// do runs one browser action, failing the test with what was being done.
func do[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) string {
	t.Helper()
	png := do(t, ctx, "screenshot", chromedp.FullScreenshot(90))
	p := filepath.Join(dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
	return p
}

// fetchStatus asks the page's own fetch for path and returns the status.
func fetchStatus(t *testing.T, ctx context.Context, url string) int {
	t.Helper()
	return do(t, ctx, "fetch "+url, chromedp.Evaluate[int](fmt.Sprintf(`fetch(%q).then(r => r.status)`, url), chromedp.EvalAwaitPromise))
}

func setFilter(t *testing.T, ctx context.Context, id, value string) []string {
	t.Helper()
	return do(t, ctx, "filter", chromedp.Evaluate[[]string](fmt.Sprintf(`(() => {
		const s = document.getElementById(%q); s.value = %q; s.dispatchEvent(new Event('input'));
		return [...document.querySelectorAll('.card')].map(c => c.dataset.id); })()`, id, value)))
}

// Must-show 1: the gallery in a real browser.
func TestViewInBrowser(t *testing.T) {
	ctx := browser(t)
	_, env := serveFake(t, runcomfytest.Config{CostUSD: 0.25})
	dir := t.TempDir()
	shots := t.TempDir()
	manifest, _ := writeManifest(t, dir, 4)
	// Three done; the fourth is left pending, to finish while the page is open.
	if r := runBinary(t, env, "run", manifest, "--poll-max", "50ms", "--max-submissions", "3"); r.code != 1 {
		t.Fatalf("first run: exit %d:\n%s", r.code, r.stderr)
	}
	pending := ""
	for _, j := range status(t, manifest).Jobs {
		if j.State == "pending" {
			pending = j.ID
		}
	}
	// A file outside the output folder, and a symlink to it from inside.
	secret := filepath.Join(dir, "secret.txt")
	os.WriteFile(secret, []byte("not yours"), 0o644)
	os.Symlink(secret, filepath.Join(dir, "out", "link.txt"))

	base := startView(t, nil, manifest, "--addr", "127.0.0.1:0")
	do(t, ctx, "open the page", chromedp.Navigate(base))
	do(t, ctx, "wait for a video", chromedp.WaitVisible(".card video"))

	// One card per job, a video for each done one, each reaching a
	// playable state (readyState >= HAVE_CURRENT_DATA, a decoded frame).
	do(t, ctx, "wait until the 3 videos are playable", chromedp.Poll[chromedp.Void](`(() => {
			const v = [...document.querySelectorAll('.card[data-state=done] video')];
			return v.length === 3 && v.every(e => e.readyState >= 2 && e.videoWidth > 0);
		})()`, chromedp.WithPollingTimeout(time.Minute)))
	if n := do(t, ctx, "count cards", chromedp.Evaluate[int](`document.querySelectorAll('.card').length`)); n != 4 {
		t.Fatalf("%d cards, want 4 (3 done, 1 pending)", n)
	}
	screenshot(t, ctx, shots, "gallery")

	// Filtering by state.
	if shown := setFilter(t, ctx, "f-state", "pending"); len(shown) != 1 || shown[0] != pending {
		t.Fatalf("filtered by pending: %v, want [%s]", shown, pending)
	}
	screenshot(t, ctx, shots, "filtered")
	if shown := setFilter(t, ctx, "f-state", ""); len(shown) != 4 {
		t.Fatalf("no filter: %v", shown)
	}

	// Rejecting with the keyboard: among the done jobs, move to the
	// second card and press r.
	doneCards := setFilter(t, ctx, "f-state", "done")
	do(t, ctx, "press j", chromedp.KeyEvent("j"))
	do(t, ctx, "press r", chromedp.KeyEvent("r"))
	target := doneCards[1]
	do(t, ctx, "wait for the verdict", chromedp.Poll[chromedp.Void](fmt.Sprintf(`(() => { const c = document.querySelector('.card[data-id=%q] .verdict'); return c && c.textContent === 'rejected'; })()`, target),
		chromedp.WithPollingTimeout(30*time.Second)))
	reviews, err := store.ReadReviews(context.Background(), filepath.Join(dir, "jobs.ledger.db"), nil)
	if err != nil || len(reviews) != 1 || reviews[target].Verdict != store.Rejected {
		t.Fatalf("reviews recorded: %v, %v; want %s rejected", reviews, err, target)
	}
	screenshot(t, ctx, shots, "rejected")
	setFilter(t, ctx, "f-state", "")

	// A job that finishes while the page is open appears without a reload.
	if r := runBinary(t, env, "run", manifest, "--poll-max", "50ms"); r.code != 0 {
		t.Fatalf("second run: exit %d:\n%s", r.code, r.stderr)
	}
	do(t, ctx, "wait for the fourth video", chromedp.Poll[chromedp.Void](`document.querySelectorAll('.card[data-state=done] video').length === 4`,
		chromedp.WithPollingTimeout(time.Minute)))
	screenshot(t, ctx, shots, "live")
	if p := os.Getenv("COMFYBATCH_GALLERY_PNG"); p != "" {
		// docs/gallery.png: COMFYBATCH_GALLERY_PNG=$PWD/docs/gallery.png go test -run TestViewInBrowser ./cmd/comfybatch/
		do(t, ctx, "wait until the 4 videos are playable", chromedp.Poll[chromedp.Void](`[...document.querySelectorAll('video')].every(e => e.readyState >= 2)`, chromedp.WithPollingTimeout(time.Minute)))
		os.WriteFile(p, do(t, ctx, "capture", chromedp.CaptureScreenshot()), 0o644)
	}

	// Nothing outside the output folder is served, however asked.
	for _, p := range []string{"files/../secret.txt", "files/%2e%2e/secret.txt", "files/..%2fsecret.txt", "files/link.txt", "files/" + strings.TrimPrefix(secret, "/"), "files/_nothing"} {
		if got := fetchStatus(t, ctx, base+p); got != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, got)
		}
	}
	if got := fetchStatus(t, ctx, base+"files/clip-0000.mp4"); got != http.StatusOK {
		t.Errorf("GET files/clip-0000.mp4: %d, want 200", got)
	}
}

// Bound beyond loopback, the page needs the random key it prints; on
// loopback it needs none.
func TestViewKeyOffLoopback(t *testing.T) {
	dir := t.TempDir()
	manifest, _ := writeManifest(t, dir, 1)
	local := startView(t, nil, manifest, "--addr", ":0")
	if !strings.HasPrefix(local, "http://127.0.0.1:") || strings.Contains(local, "key=") {
		t.Fatalf("--addr :0 serves %s, want loopback without a key", local)
	}
	open := startView(t, nil, manifest, "--addr", "0.0.0.0:0")
	u, key, ok := strings.Cut(open, "?key=")
	if !ok || len(key) != 32 {
		t.Fatalf("--addr 0.0.0.0:0 serves %s, want a 32-hex key", open)
	}
	port := u[strings.LastIndex(u, ":")+1:]
	base := "http://127.0.0.1:" + port
	for url, want := range map[string]int{base + "/": 403, base + "/api/jobs": 403, base + "/?key=" + key: 200, base + "/api/jobs?key=" + key: 200} {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", url, resp.StatusCode, want)
		}
	}
}
