package media_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"comfybatch/media"
)

// served is one file of the test server.
type served struct {
	body []byte
	// chunked sends no Content-Length, so the checker must count the
	// bytes itself.
	chunked bool
}

// mediaServer serves files by path and counts the requests for each.
type mediaServer struct {
	*httptest.Server
	mu       sync.Mutex
	requests map[string]int
}

func newMediaServer(t *testing.T, files map[string]served) *mediaServer {
	s := &mediaServer{requests: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests[r.URL.Path]++
		s.mu.Unlock()
		f, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if !f.chunked {
			w.Header().Set("Content-Length", strconv.Itoa(len(f.body)))
			_, _ = w.Write(f.body)
			return
		}
		for b := f.body; len(b) > 0; {
			n := min(len(b), 64<<10)
			if _, err := w.Write(b[:n]); err != nil {
				return // the checker stopped reading at its limit
			}
			w.(http.Flusher).Flush()
			b = b[n:]
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *mediaServer) count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[path]
}

func rulesByURL(got map[string][]media.Problem) map[string][]string {
	out := map[string][]string{}
	for u, probs := range got {
		for _, p := range probs {
			out[u] = append(out[u], p.Rule)
		}
	}
	return out
}

func TestCheckerAgainstServedFiles(t *testing.T) {
	good512 := pngFile(t, 512, 512)
	twelveMB := append(slices.Clone(good512), make([]byte, 12_000_000)...)
	files := map[string]served{
		"/good.png":         {body: good512},
		"/good.bmp":         {body: bmpFile(t, 400, 1999)},
		"/good.webp":        {body: webpHeader(1024, 768)},
		"/good.wav":         {body: wavFile(5, 0)},
		"/good.mp3":         {body: mp3File(10, true)},
		"/raw.mp3":          {body: mp3File(10, false), chunked: true},
		"/png-named.jpg":    {body: good512},
		"/big.png":          {body: pngFile(t, 2048, 2048)},
		"/small.jpg":        {body: jpegFile(t, 300, 300)},
		"/exactly360.png":   {body: pngFile(t, 360, 800)},
		"/huge.png":         {body: twelveMB},
		"/huge-chunked.png": {body: twelveMB, chunked: true},
		"/anim.gif":         {body: []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;")},
		"/short.wav":        {body: wavFile(2, 0), chunked: true},
		"/long.mp3":         {body: mp3File(40, false)},
		"/notes.txt":        {body: []byte("not audio at all")},
	}
	srv := newMediaServer(t, files)
	u := func(path string) string { return srv.URL + path }

	items := []media.Item{
		{URL: u("/good.png"), Kind: media.Image},
		{URL: u("/good.png"), Kind: media.Image}, // duplicates: fetched once
		{URL: u("/good.png"), Kind: media.Image},
		{URL: u("/good.bmp"), Kind: media.Image},
		{URL: u("/good.webp"), Kind: media.Image},
		{URL: u("/good.wav"), Kind: media.Audio},
		{URL: u("/good.wav"), Kind: media.Audio},
		{URL: u("/good.mp3"), Kind: media.Audio},
		{URL: u("/raw.mp3"), Kind: media.Audio},
		{URL: u("/png-named.jpg"), Kind: media.Image},
		{URL: u("/big.png"), Kind: media.Image},
		{URL: u("/small.jpg"), Kind: media.Image},
		{URL: u("/exactly360.png"), Kind: media.Image},
		{URL: u("/huge.png"), Kind: media.Image},
		{URL: u("/huge-chunked.png"), Kind: media.Image},
		{URL: u("/anim.gif"), Kind: media.Image},
		{URL: u("/short.wav"), Kind: media.Audio},
		{URL: u("/long.mp3"), Kind: media.Audio},
		{URL: u("/long.mp3"), Kind: media.Audio},
		{URL: u("/notes.txt"), Kind: media.Audio},
		{URL: u("/missing.png"), Kind: media.Image},
		{URL: u("/good.mp3"), Kind: media.Image}, // same URL as another kind
		// Refused before any fetch: RunComfy could not use it.
		{URL: "http://example.com/a.png", Kind: media.Image},
	}
	c := &media.Checker{Rules: media.DefaultRules(), Concurrency: 3, Limiter: rate.NewLimiter(rate.Inf, 1)}
	got := c.Check(context.Background(), items)

	want := map[string][]string{
		// A PNG named .jpg passes: the format is judged from the bytes,
		// and RunComfy documents no rule on the name (see CheckImage).
		u("/good.mp3"):             {"kind"},
		u("/big.png"):              {"dimensions"},
		u("/small.jpg"):            {"dimensions"},
		u("/exactly360.png"):       {"dimensions"}, // "exceed 360": 360 itself is refused
		u("/huge.png"):             {"size"},
		u("/huge-chunked.png"):     {"size"},
		u("/anim.gif"):             {"format"},
		u("/short.wav"):            {"duration"},
		u("/long.mp3"):             {"duration"},
		u("/notes.txt"):            {"format"},
		u("/missing.png"):          {"fetch"},
		"http://example.com/a.png": {"https"},
	}
	if g := rulesByURL(got); !mapsEqual(g, want) {
		t.Errorf("problems:\n got %v\nwant %v", g, want)
		for _, probs := range got {
			for _, p := range probs {
				t.Log(p)
			}
		}
	}
	for _, probs := range got {
		for _, p := range probs {
			if p.URL == "" || p.Msg == "" {
				t.Errorf("problem without URL or message: %+v", p)
			}
		}
	}
	if m := got[u("/missing.png")]; len(m) == 1 && !strings.Contains(m[0].Msg, "404") {
		t.Errorf("fetch problem %q should give the status", m[0].Msg)
	}
	if m := got[u("/big.png")]; len(m) == 1 && !strings.Contains(m[0].Msg, "2048x2048") {
		t.Errorf("dimensions problem %q should give the size found", m[0].Msg)
	}

	for path := range files {
		if n := srv.count(path); n != 1 {
			t.Errorf("%s fetched %d times, want once", path, n)
		}
	}
	if n := srv.count("/missing.png"); n != 1 {
		t.Errorf("/missing.png fetched %d times, want once", n)
	}
}

func mapsEqual(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

func TestCheckImage(t *testing.T) {
	rules := media.DefaultRules()
	tests := []struct {
		name string
		file []byte
		want []string
	}{
		{"png 512", pngFile(t, 512, 512), nil},
		{"png 1999x361", pngFile(t, 1999, 361), nil},
		{"png 2000 wide", pngFile(t, 2000, 500), []string{"dimensions"}},
		{"jpeg 720x1280", jpegFile(t, 720, 1280), nil},
		{"jpeg 300", jpegFile(t, 300, 300), []string{"dimensions"}},
		{"bmp 361", bmpFile(t, 361, 361), nil},
		{"webp 1024x768", webpHeader(1024, 768), nil},
		{"webp 4000x100", webpHeader(4000, 100), []string{"dimensions"}},
		{"truncated png", pngFile(t, 512, 512)[:20], []string{"decode"}},
		{"empty", nil, []string{"format"}},
		{"wav is not an image", wavFile(5, 0), []string{"format"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			probs := media.CheckImage(bytes.NewReader(tt.file), int64(len(tt.file)), rules)
			if got := problemRules(probs); !slices.Equal(got, tt.want) {
				t.Errorf("rules = %q, want %q (%v)", got, tt.want, probs)
			}
		})
	}
	// A format outside the accepted list is refused even when decodable.
	pngOnly := rules
	pngOnly.ImageFormats = []string{"png"}
	if got := problemRules(media.CheckImage(bytes.NewReader(jpegFile(t, 512, 512)), -1, pngOnly)); !slices.Equal(got, []string{"format"}) {
		t.Errorf("jpeg with png-only rules: %q", got)
	}
}

func TestCheckAudio(t *testing.T) {
	rules := media.DefaultRules()
	tests := []struct {
		name string
		file []byte
		want []string
	}{
		{"wav 3 s (inclusive)", wavFile(3, 0), nil},
		{"wav 30 s (inclusive)", wavFile(30, 0), nil},
		{"wav 2.9 s", wavFile(2.9, 0), []string{"duration"}},
		{"wav 30.1 s", wavFile(30.1, 0), []string{"duration"}},
		{"wav of no samples", wavFile(0, 0), []string{"duration"}},
		// A streaming writer's 0xFFFFFFFF data length is capped by the
		// real size: this is 5 s, not 74 hours.
		{"wav with open-ended data length", wavFile(5, 0xFFFFFFFF), nil},
		{"wav cut inside its header", wavFile(5, 0)[:30], []string{"decode"}},
		{"mp3 10 s", mp3File(10, false), nil},
		{"mp3 10 s with ID3", mp3File(10, true), nil},
		{"mp3 2 s", mp3File(2, false), []string{"duration"}},
		{"mp3 31 s", mp3File(31, true), []string{"duration"}},
		{"ogg", []byte("OggS\x00\x02 rest of an ogg page"), []string{"format"}},
		{"png is not audio", pngFile(t, 512, 512), []string{"format"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			probs := media.CheckAudio(bytes.NewReader(tt.file), int64(len(tt.file)), rules)
			if got := problemRules(probs); !slices.Equal(got, tt.want) {
				t.Errorf("rules = %q, want %q (%v)", got, tt.want, probs)
			}
		})
	}
}

func TestDurationIsMeasured(t *testing.T) {
	// Narrow the window around the expected length so a wrong duration,
	// not only an absurd one, fails.
	window := func(lo, hi float64) media.Rules {
		r := media.DefaultRules()
		r.MinAudio = time.Duration(lo * float64(time.Second))
		r.MaxAudio = time.Duration(hi * float64(time.Second))
		return r
	}
	for name, tc := range map[string]struct {
		file   []byte
		lo, hi float64
	}{
		"wav 7.5 s": {wavFile(7.5, 0), 7.49, 7.51},
		"mp3 12 s":  {mp3File(12, true), 11.98, 12.05}, // whole frames: up to 26 ms over
	} {
		if probs := media.CheckAudio(bytes.NewReader(tc.file), -1, window(tc.lo, tc.hi)); len(probs) != 0 {
			t.Errorf("%s: %v", name, probs)
		}
		if probs := media.CheckAudio(bytes.NewReader(tc.file), -1, window(tc.hi, tc.hi+1)); len(probs) != 1 {
			t.Errorf("%s judged within %v..%v s: want a duration problem, got %v", name, tc.hi, tc.hi+1, probs)
		}
	}
}

// countingReader reports how much of an endless stream was consumed.
type countingReader struct{ n int64 }

func (c *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 0
	}
	c.n += int64(len(p))
	return len(p), nil
}

func TestReadsNoMoreThanTheLimit(t *testing.T) {
	rules := media.DefaultRules()

	// Files of unknown size that never end: reading stops at the limit.
	head := pngFile(t, 512, 512)
	endless := &countingReader{}
	probs := media.CheckImage(io.MultiReader(bytes.NewReader(head), endless), -1, rules)
	if got := problemRules(probs); !slices.Equal(got, []string{"size"}) {
		t.Errorf("endless image: rules %q, want size", got)
	}
	if read := int64(len(head)) + endless.n; read > rules.MaxImageBytes+1 {
		t.Errorf("read %d bytes of an endless image, limit %d", read, rules.MaxImageBytes+1)
	}

	head = mp3File(10, false)
	endless = &countingReader{}
	probs = media.CheckAudio(io.MultiReader(bytes.NewReader(head), endless), -1, rules)
	if got := problemRules(probs); !slices.Equal(got, []string{"size"}) {
		t.Errorf("endless mp3: rules %q, want size only (duration unknowable)", got)
	}
	if read := int64(len(head)) + endless.n; read > rules.MaxAudioBytes+1 {
		t.Errorf("read %d bytes of an endless mp3, limit %d", read, rules.MaxAudioBytes+1)
	}

	// An announced size is believed: a WAV is judged from its header
	// and nothing past the file is read.
	endless = &countingReader{}
	probs = media.CheckAudio(io.MultiReader(bytes.NewReader(wavFile(5, 0)), endless), 20_000_000, rules)
	if got := problemRules(probs); !slices.Equal(got, []string{"size"}) {
		t.Errorf("20 MB wav: rules %q, want size", got)
	}
	if endless.n != 0 {
		t.Errorf("a wav of announced size read %d bytes past its end", endless.n)
	}
}

func problemRules(probs []media.Problem) []string {
	var out []string
	for _, p := range probs {
		out = append(out, p.Rule)
	}
	return out
}

func TestCheckerBoundsConcurrency(t *testing.T) {
	var inFlight, most atomic.Int32
	body := pngFile(t, 512, 512)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	var items []media.Item
	for i := range 12 {
		items = append(items, media.Item{URL: srv.URL + "/" + strconv.Itoa(i) + ".png", Kind: media.Image})
	}
	c := &media.Checker{Concurrency: 2} // zero Rules: the defaults
	if got := c.Check(context.Background(), items); len(got) != 0 {
		t.Fatalf("unexpected problems: %v", got)
	}
	if m := most.Load(); m > 2 || m < 1 {
		t.Errorf("%d fetches in flight at once, want at most 2", m)
	}
}

func TestCheckerStopsWithContext(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c := &media.Checker{Limiter: rate.NewLimiter(rate.Every(time.Hour), 1)}
	got := c.Check(ctx, []media.Item{{URL: srv.URL + "/a.png", Kind: media.Image}, {URL: srv.URL + "/b.wav", Kind: media.Audio}})
	if len(got) != 2 || got[srv.URL+"/a.png"][0].Rule != "fetch" {
		t.Errorf("cancelled check: %v", got)
	}
	if hits.Load() != 0 {
		t.Errorf("%d requests sent after cancellation", hits.Load())
	}
}

func TestKindOfField(t *testing.T) {
	tests := []struct {
		field string
		kind  media.Kind
		ok    bool
	}{
		{"img_url", media.Image, true},
		{"image_url", media.Image, true},
		{"image_urls", media.Image, true},
		{"reference_image", media.Image, true},
		{"audio_url", media.Audio, true},
		{"audio", media.Audio, true},
		{"prompt", 0, false},
		{"reference_video_url_1", 0, false},
	}
	for _, tt := range tests {
		k, ok := media.KindOfField(tt.field)
		if k != tt.kind || ok != tt.ok {
			t.Errorf("KindOfField(%q) = %v, %v; want %v, %v", tt.field, k, ok, tt.kind, tt.ok)
		}
	}
}

func TestItemsOf(t *testing.T) {
	items := media.ItemsOf(map[string]any{
		"prompt":     "https://example.com/not-media.png",
		"img_url":    "https://example.com/a.png",
		"audio_url":  "https://example.com/a.mp3",
		"audio":      true,
		"image_urls": []any{"https://example.com/b.png", int64(3), "not a url"},
	})
	slices.SortFunc(items, func(a, b media.Item) int { return strings.Compare(a.URL, b.URL) })
	want := []media.Item{
		{URL: "https://example.com/a.mp3", Kind: media.Audio},
		{URL: "https://example.com/a.png", Kind: media.Image},
		{URL: "https://example.com/b.png", Kind: media.Image},
	}
	if !slices.Equal(items, want) {
		t.Errorf("ItemsOf = %v, want %v", items, want)
	}
}
