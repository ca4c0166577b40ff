// Package view owns the review page of `comfybatch view`: a local web
// server over a manifest's ledger and output folder. It reads the ledger
// read-only (it never takes the runner's lock, so it runs beside a run),
// writes reviews only to their journal (store.OpenReviews), and serves
// files only from inside the output folder, through an os.Root, so that
// no "..", absolute path or symlink reaches out of it. Its page and
// scripts are embedded: it works offline, with no build step.
//
// Live updates: the page polls /api/jobs with the version it has. A poll
// where nothing moved costs the ledger one read of the events table's
// last row and the journal's; only when the version changed are the jobs
// read again, in three queries.
package view

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"comfybatch/lifecycle"
	"comfybatch/store"
)

//go:embed assets
var assets embed.FS

// Config is what the page is over.
type Config struct {
	Ledger string // the ledger's path
	OutDir string // the output folder
	Title  string // shown in the header (the manifest's name)
	// Key, when set, must be in every request's query (key=...): the page
	// is bound beyond loopback.
	Key string
	Now func() time.Time
}

// Server serves the page.
type Server struct {
	cfg  Config
	root *os.Root // the output folder; nil until it exists

	mu sync.Mutex
	st *store.Store // read-only; opened once the ledger exists
}

// New makes a server; Close releases what it opened.
func New(cfg Config) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Server{cfg: cfg}
}

// Close closes the ledger and the output folder.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	if s.st != nil {
		errs = append(errs, s.st.Close())
	}
	if s.root != nil {
		errs = append(errs, s.root.Close())
	}
	return errors.Join(errs...)
}

// Handler is the page, its JSON endpoints and the files.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets")
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		b, _ := assets.ReadFile("assets/index.html")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(b)
	})
	mux.HandleFunc("GET /api/jobs", s.jobs)
	mux.HandleFunc("GET /api/job", s.job)
	mux.HandleFunc("POST /api/review", s.review)
	mux.HandleFunc("GET /files/", s.file)
	return s.guard(mux)
}

// guard refuses requests without the key (when there is one), and asks
// browsers not to let other sites frame or sniff the page.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Key != "" && subtle.ConstantTimeCompare([]byte(r.URL.Query().Get("key")), []byte(s.cfg.Key)) != 1 {
			http.Error(w, "this page needs the key printed by comfybatch view", http.StatusForbidden)
			return
		}
		if s.cfg.Key == "" && !literalHost(r.Host) {
			// Without a key the page trusts loopback; a name that is not
			// localhost is a web site rebinding its DNS to 127.0.0.1.
			http.Error(w, "comfybatch view answers on its loopback address only", http.StatusForbidden)
			return
		}
		if r.Method == http.MethodPost {
			// A web page may post a form or text/plain to loopback without
			// asking: a review (which run --redo-rejected pays for) takes
			// JSON from this page's own origin only.
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				http.Error(w, "want Content-Type: application/json", http.StatusUnsupportedMediaType)
				return
			}
			if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host {
				http.Error(w, "cross-origin request refused", http.StatusForbidden)
				return
			}
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; media-src 'self'")
		next.ServeHTTP(w, r)
	})
}

// literalHost reports whether a Host header names an IP address or
// localhost.
func literalHost(hostport string) bool {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		h = hostport
	}
	return h == "localhost" || net.ParseIP(strings.Trim(h, "[]")) != nil
}

// ledger returns the open ledger, opening it once it exists (a page may be
// opened before the first run).
func (s *Server) ledger() (*store.Store, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st != nil {
		return s.st, nil
	}
	st, err := store.Open(s.cfg.Ledger, store.Options{ReadOnly: true, Now: s.cfg.Now})
	if err != nil {
		return nil, err
	}
	s.st = st
	return st, nil
}

func (s *Server) outRoot() (*os.Root, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.root != nil {
		return s.root, nil
	}
	root, err := os.OpenRoot(s.cfg.OutDir)
	if err != nil {
		return nil, err
	}
	s.root = root
	return root, nil
}

// Card is one job as the gallery shows it.
type Card struct {
	ID        string          `json:"id"`
	Model     string          `json:"model"`
	State     lifecycle.State `json:"state"`
	Prompt    string          `json:"prompt"`
	Vary      map[string]any  `json:"vary"` // the inputs that differ between jobs
	CostUSD   *float64        `json:"cost_usd"`
	QueuedS   *float64        `json:"queued_s"` // submitted until running
	RanS      *float64        `json:"ran_s"`    // running until finished
	Error     string          `json:"error,omitempty"`
	RequestID string          `json:"request_id"`
	File      string          `json:"file,omitempty"` // first file, relative to the output folder
	Kind      string          `json:"kind,omitempty"` // video, image, audio or ""
	Review    *store.Verdict  `json:"review"`
	Note      string          `json:"note,omitempty"`
	input     map[string]any
}

// Snapshot is what /api/jobs answers.
type Snapshot struct {
	Version   string         `json:"version"`
	Unchanged bool           `json:"unchanged,omitempty"`
	Title     string         `json:"title"`
	Counts    map[string]int `json:"counts"`
	SpentUSD  float64        `json:"spent_usd"`
	// EstTotalUSD is spent plus the jobs still to finish at the mean cost
	// of those that reported one; null until one has.
	EstTotalUSD *float64 `json:"est_total_usd"`
	Models      []string `json:"models"`
	Jobs        []Card   `json:"jobs"`
}

func (s *Server) version(ctx context.Context, st *store.Store) (string, error) {
	v, err := st.Version(ctx)
	if err != nil {
		return "", err
	}
	rv, err := store.ReviewsVersion(ctx, s.cfg.Ledger)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d.%d", v, rv), nil
}

func (s *Server) jobs(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	st, err := s.ledger()
	if errors.Is(err, store.ErrNoLedger) {
		writeJSON(w, Snapshot{Version: "0", Title: s.cfg.Title, Counts: map[string]int{}, Jobs: []Card{}, Models: []string{}})
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	v, err := s.version(ctx, st)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if since := r.URL.Query().Get("since"); since == v {
		writeJSON(w, Snapshot{Version: v, Unchanged: true})
		return
	}
	snap, err := s.Snapshot(ctx, st)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	snap.Version = v
	writeJSON(w, snap)
}

// Snapshot reads every job of the ledger as the gallery shows it.
func (s *Server) Snapshot(ctx context.Context, st *store.Store) (Snapshot, error) {
	snap := Snapshot{Title: s.cfg.Title, Counts: map[string]int{}, Jobs: []Card{}}
	reviews, err := store.ReadReviews(ctx, s.cfg.Ledger, st)
	if err != nil {
		return snap, err
	}
	running, err := st.RunningSince(ctx)
	if err != nil {
		return snap, err
	}
	first := map[string]string{}
	if err := st.EachFile(ctx, func(id string, f store.File) error {
		if _, ok := first[id]; !ok {
			first[id] = f.Path
		}
		return nil
	}); err != nil {
		return snap, err
	}
	models := map[string]bool{}
	var costSum float64
	var costN int
	err = st.EachJob(ctx, func(j store.Job) error {
		c := Card{ID: j.ID, Model: j.Model, State: j.State, CostUSD: j.CostUSD, Error: j.Error, RequestID: j.RequestID, File: first[j.ID]}
		json.Unmarshal(j.Input, &c.input)
		if p, ok := c.input["prompt"].(string); ok {
			c.Prompt = p
		}
		c.Kind = kind(c.File)
		if rv, ok := store.Current(reviews, j); ok {
			c.Review, c.Note = &rv.Verdict, rv.Note
		}
		run := running[j.ID]
		c.QueuedS = span(j.SubmittedAt, run)
		c.RanS = span(run, j.FinishedAt)
		if j.CostUSD != nil {
			costSum += *j.CostUSD
			costN++
		}
		snap.Counts[string(j.State)]++
		models[j.Model] = true
		snap.Jobs = append(snap.Jobs, c)
		return nil
	})
	if err != nil {
		return snap, err
	}
	if snap.SpentUSD, err = st.Spent(ctx); err != nil {
		return snap, err
	}
	if costN > 0 {
		left := 0
		for _, c := range snap.Jobs {
			if !c.State.Settled() {
				left++
			}
		}
		est := snap.SpentUSD + float64(left)*costSum/float64(costN)
		snap.EstTotalUSD = &est
	}
	for m := range models {
		snap.Models = append(snap.Models, m)
	}
	sort.Strings(snap.Models)
	vary(snap.Jobs)
	return snap, nil
}

// vary fills each card's Vary with the inputs whose values differ between
// jobs (the prompt has its own place).
func vary(cards []Card) {
	seen := map[string]string{}
	varies := map[string]bool{}
	for _, c := range cards {
		for k, v := range c.input {
			b, _ := json.Marshal(v)
			if prev, ok := seen[k]; ok && prev != string(b) {
				varies[k] = true
			}
			seen[k] = string(b)
		}
	}
	for k := range seen {
		for _, c := range cards {
			if _, ok := c.input[k]; !ok {
				varies[k] = true // present in some jobs only
			}
		}
	}
	delete(varies, "prompt")
	for i := range cards {
		cards[i].Vary = map[string]any{}
		for k := range varies {
			if v, ok := cards[i].input[k]; ok {
				cards[i].Vary[k] = v
			}
		}
	}
}

func span(from, to string) *float64 {
	if from == "" || to == "" {
		return nil
	}
	a, err1 := time.Parse(time.RFC3339Nano, from)
	b, err2 := time.Parse(time.RFC3339Nano, to)
	if err1 != nil || err2 != nil || b.Before(a) {
		return nil
	}
	d := b.Sub(a).Seconds()
	return &d
}

func kind(file string) string {
	switch strings.ToLower(path.Ext(file)) {
	case ".mp4", ".webm", ".mov", ".m4v":
		return "video"
	case ".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp":
		return "image"
	case ".mp3", ".wav", ".ogg", ".m4a", ".flac":
		return "audio"
	}
	return ""
}

// Detail is what /api/job answers: everything the ledger holds of one job.
type Detail struct {
	store.Job
	Files  []store.File  `json:"files"`
	Events []store.Event `json:"events"`
	Review *store.Review `json:"review"`
}

func (s *Server) job(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	st, err := s.ledger()
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	id := r.URL.Query().Get("id")
	j, err := st.Job(ctx, id)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	d := Detail{Job: j, Files: []store.File{}}
	if d.Files, err = st.Files(ctx, id); err == nil {
		d.Events, err = st.Events(ctx, id)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	reviews, err := store.ReadReviews(ctx, s.cfg.Ledger, st)
	if err == nil {
		if rv, ok := store.Current(reviews, j); ok {
			d.Review = &rv
		}
	}
	writeJSON(w, d)
}

type reviewRequest struct {
	IDs     []string      `json:"ids"`
	Verdict store.Verdict `json:"verdict"`
	Note    string        `json:"note"`
}

// review records the verdict on each job's current output, in the journal.
func (s *Server) review(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req reviewRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, "bad review: "+err.Error(), http.StatusBadRequest)
		return
	}
	if req.Verdict != store.Accepted && req.Verdict != store.Rejected {
		http.Error(w, "verdict: want accepted or rejected", http.StatusBadRequest)
		return
	}
	st, err := s.ledger()
	if err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	var rs []store.Review
	for _, id := range req.IDs {
		j, err := st.Job(ctx, id)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		if j.State != lifecycle.Done {
			http.Error(w, fmt.Sprintf("%s is %s: only a done job's output can be reviewed", id, j.State), http.StatusConflict)
			return
		}
		rs = append(rs, store.Review{JobID: id, RequestID: j.RequestID, Verdict: req.Verdict, Note: req.Note})
	}
	jr, err := store.OpenReviews(s.cfg.Ledger, s.cfg.Now)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer jr.Close()
	if err := jr.Put(ctx, rs...); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, map[string]int{"recorded": len(rs)})
}

// file serves a file from inside the output folder, seekable (Range).
// Anything that is not a regular file inside it is 404: os.Root refuses
// "..", absolute names and symlinks that lead out.
func (s *Server) file(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/files/")
	root, err := s.outRoot()
	if err != nil || name == "" || !fs.ValidPath(name) {
		http.NotFound(w, r)
		return
	}
	f, err := root.Open(name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	enc.Encode(v)
}
