// Package runcomfytest simulates RunComfy's Model API in memory: submit,
// status, result, cancel and model calls, plus the output files. It serves
// the tests, `comfybatch fake-server` and `--fake`. Its misbehaviour (429s,
// 5xx, dropped submits, truncated or expired downloads, failed jobs) is
// drawn from a seeded RNG, and it counts submissions per input so that a
// test can prove nothing was submitted twice.
package runcomfytest

import (
	"bytes"
	"container/heap"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"comfybatch/runcomfy"
)

// Config shapes the simulation. The zero value is a well-behaved, instant
// API without authentication.
type Config struct {
	QueueTime, RunTime time.Duration // per job; 0 = instant
	Jitter             float64       // ± fraction applied to both durations

	FailureRate      float64 // job ends "completed" with no output and an error
	FailedStatusRate float64 // job ends "failed" with an error

	Rate429         float64       // share of API calls answered 429
	RetryAfterShare float64       // share of those 429s that carry Retry-After: 1
	Rate5xx         float64       // share of status and result calls answered 500/502/503
	DropSubmitRate  float64       // submit creates the job, then cuts the connection with no answer
	SubmitDelay     time.Duration // submit creates the job, then waits this long before answering
	TruncateRate    float64       // downloads whose body stops short of Content-Length
	ExpireRate      float64       // jobs whose first output URL answers 410 until the result is fetched again

	// StallBody makes every result answer (not the endpoint's error
	// answers) send its headers, with the Content-Length of the whole
	// answer, at once, then wait this long before the body, or until the
	// client goes away: a server that stalls mid-answer.
	StallBody time.Duration
	// ResultBodyPad pads every result answer (not the endpoint's error
	// answers) with a field "padding" of this many bytes, which clients
	// ignore: a large answer, like one that carries its outputs inline as
	// data: URLs. It is written a piece at a time, so it costs the server
	// no memory.
	ResultBodyPad int

	// MaxRunning is how many jobs the account runs at once (0 = no limit):
	// the others wait in the queue, first come first served, as RunComfy
	// runs an account's jobs.
	MaxRunning int
	// FileDelay holds every output file's body back this long: a slow
	// download, without making the test wait on bandwidth.
	FileDelay time.Duration

	ExtraStatus   string // if set, reported once between in_queue and in_progress
	OutputsPerJob int    // default 1; more than 1 answers "videos": [...]
	CostUSD       float64
	BalanceJobs   int // > 0: submissions after this many jobs answer error_code 400002
	// FetchInputs makes a submit GET every http(s) URL in a field whose
	// name holds "url", as a model fetches its inputs, and answer 422 when
	// one cannot be fetched; JobInfo.Fetched has what each one answered.
	FetchInputs bool

	PriceUSD  float64 // GET /v1/models/{id}; default 0.05
	PriceUnit string  // default "second"

	// PortableIDs makes request ids carry their job's fate (see
	// portable.go) and a nonce drawn per Server: ids never repeat across
	// processes, and a Server answers for an id another one created, in
	// another process, as RunComfy answers for a request whatever client
	// asks. What an id cannot carry is a cancel: a job cancelled through
	// one Server runs on as seen through another. It overrides
	// Answers.NumericRequestIDs. --fake and fake-server use it.
	PortableIDs bool
	// Catalog is what GET /v1/models lists and GET /v1/models/{id}
	// answers with a schema; nil means DefaultCatalog(). Models outside
	// it are answered with PriceUSD and no schema.
	Catalog []CatalogModel

	Token string // if set, API calls need "Authorization: Bearer <Token>"
	Seed  int64
	Now   func() time.Time // default time.Now

	Answers Answers // the shape of the answers; the zero value is the documented API's
}

// Stats counts what the server saw. Each API counter counts every request
// to that endpoint, rejected ones included.
type Stats struct {
	Submits, Created, Status, Result, Cancel, Model int64

	Files         int64 // output file requests
	FilesWithAuth int64 // file requests that carried an Authorization header
	Rejected429   int64
	Errors5xx     int64
	Unauthorized  int64 // API calls without the right token
	NoBalance     int64 // submits refused with 400002
	Dropped       int64 // submits whose job was created but got no answer
	Truncated     int64 // downloads cut short
	Expired       int64 // file requests answered 410
	NotFound      int64 // requests for unknown request ids or files, or hidden by Answers.NotFoundFor

	Refused           int64 // submits refused by Answers.SubmitRefuse, with no job created
	CreatedUnanswered int64 // submits whose job was created but answered with no id (Answers.SubmitCreated*, SubmitEmptyBody)
}

// JobInfo describes one created job, for assertions.
type JobInfo struct {
	RequestID string
	Model     string
	Input     json.RawMessage // canonical JSON of the submitted body
	Status    string          // current status, canonical: lower case and never renamed by Answers
	// Inline has the hex sha256 of each data: URI the input carried, by
	// field (or field[i]); Input holds "data:TYPE;sha256=HEX" in its place.
	Inline map[string]string
	// Fetched has the hex sha256 of what each input URL answered, by field
	// (or field[i]), under Config.FetchInputs.
	Fetched map[string]string
}

// outcome is how a job ends, drawn when it is created.
type outcome int

const (
	succeed outcome = iota
	emptyOutput
	failStatus
)

type job struct {
	id, model string
	input     json.RawMessage
	seq       int64 // creation order, for queue positions
	created   time.Time
	queueEnd  time.Time
	runEnd    time.Time
	seenEnded time.Time // when a result first told of the end
	outcome   outcome
	outputs   int     // number of output files
	cost      float64 // reported in the result once finished
	expires   bool    // first output URL answers 410 until a later result fetch
	cancelled bool
	kind      string // Answers.OutputKind when created: its URLs and files must agree
	adopted   bool   // created by another Server, known here from its portable id
	inline    map[string]string
	fetched   map[string]string

	extraShown bool // Config.ExtraStatus was reported
	// resultFetches counts result answers after the end: it is the
	// generation of the file URLs handed out, which is how an expired URL
	// is told from a fresh one.
	resultFetches int
}

type counters struct {
	submits, created, status, result, cancel, model atomic.Int64
	files, filesWithAuth, rejected429, errors5xx    atomic.Int64
	unauthorized, noBalance, dropped, truncated     atomic.Int64
	expired, notFound, refused, createdUnanswered   atomic.Int64
}

// Server is the simulated API. It is safe for concurrent use; every request
// costs O(1) work, whatever the number of jobs.
type Server struct {
	mux *http.ServeMux
	n   counters

	mu          sync.Mutex // guards everything below
	cfg         Config     // read under mu: Update may change it while serving
	rng         *rand.Rand
	jobs        map[string]*job
	byInput     map[string]int
	duplicates  int
	seq         int64
	dequeuedSeq int64   // highest seq seen out of the queue: positions derive from it
	slots       endHeap // with MaxRunning: the ends of the jobs holding the account's places
	emptyBodies int     // submits answered by Answers.SubmitEmptyBody, to alternate {} and []
	nonce       string  // in every portable id this Server makes
	ts          *httptest.Server

	defaultCatalog []CatalogModel
}

// New builds a Server; Start serves it on a loopback port, or use it as an
// http.Handler.
func New(cfg Config) *Server {
	s := &Server{
		cfg:     withDefaults(cfg),
		mux:     http.NewServeMux(),
		rng:     rand.New(rand.NewPCG(uint64(cfg.Seed), 0x636f6d6679)),
		jobs:    make(map[string]*job),
		byInput: make(map[string]int),
		nonce:   newNonce(),

		defaultCatalog: DefaultCatalog(),
	}
	s.mux.HandleFunc("GET /v1/models", s.models)
	s.mux.HandleFunc("POST /v1/models/{model...}", s.submit)
	s.mux.HandleFunc("GET /v1/models/{model...}", s.modelInfo)
	s.mux.HandleFunc("GET /v1/requests/{id}/status", s.status)
	s.mux.HandleFunc("GET /v1/requests/{id}/result", s.result)
	s.mux.HandleFunc("POST /v1/requests/{id}/cancel", s.cancel)
	s.mux.HandleFunc("GET /files/{id}/{name}", s.file) // GET patterns match HEAD too
	return s
}

func withDefaults(cfg Config) Config {
	if cfg.OutputsPerJob <= 0 {
		cfg.OutputsPerJob = 1
	}
	if cfg.PriceUSD == 0 {
		cfg.PriceUSD = 0.05
	}
	if cfg.PriceUnit == "" {
		cfg.PriceUnit = "second"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg
}

// Update changes the configuration while serving, e.g. to end an outage
// in the middle of a test. Jobs already created keep the fate, timings and
// outputs they were given; the Seed is not re-applied.
func (s *Server) Update(f func(*Config)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg := s.cfg
	f(&cfg)
	s.cfg = withDefaults(cfg)
}

// config returns a copy of the configuration for a handler to use outside
// the lock.
func (s *Server) config() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Start serves on 127.0.0.1 at a free port and returns the API base URL,
// "http://127.0.0.1:PORT". Output files are served by the same listener
// under the name "localhost", so that they are on another host as far as
// the token rule is concerned.
func (s *Server) Start() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ts == nil {
		s.ts = httptest.NewServer(s)
	}
	return s.ts.URL
}

// Close stops a started server.
func (s *Server) Close() {
	s.mu.Lock()
	ts := s.ts
	s.mu.Unlock()
	if ts != nil {
		ts.Close()
	}
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	n := &s.n
	return Stats{
		Submits: n.submits.Load(), Created: n.created.Load(), Status: n.status.Load(),
		Result: n.result.Load(), Cancel: n.cancel.Load(), Model: n.model.Load(),
		Files: n.files.Load(), FilesWithAuth: n.filesWithAuth.Load(),
		Rejected429: n.rejected429.Load(), Errors5xx: n.errors5xx.Load(),
		Unauthorized: n.unauthorized.Load(), NoBalance: n.noBalance.Load(),
		Dropped: n.dropped.Load(), Truncated: n.truncated.Load(),
		Expired: n.expired.Load(), NotFound: n.notFound.Load(),
		Refused: n.refused.Load(), CreatedUnanswered: n.createdUnanswered.Load(),
	}
}

// SubmissionsByInput counts created jobs per model + "\n" + canonical JSON
// of the submitted body (keys sorted).
func (s *Server) SubmissionsByInput() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]int, len(s.byInput))
	for k, v := range s.byInput {
		m[k] = v
	}
	return m
}

// Duplicates is the number of jobs created for an input that had already
// been submitted: the sum over inputs of (count - 1).
func (s *Server) Duplicates() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.duplicates
}

// Jobs lists every job this Server created in creation order, with its
// current status.
func (s *Server) Jobs() []JobInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	all := make([]*job, 0, len(s.jobs))
	for _, j := range s.jobs {
		if !j.adopted {
			all = append(all, j)
		}
	}
	sort.Slice(all, func(a, b int) bool { return all[a].seq < all[b].seq })
	out := make([]JobInfo, len(all))
	for i, j := range all {
		st, _ := s.stateLocked(j, now, false)
		out[i] = JobInfo{RequestID: j.id, Model: j.model, Input: j.input, Status: st, Inline: j.inline, Fetched: j.fetched}
	}
	return out
}

// chanceLocked draws true with probability p.
func (s *Server) chanceLocked(p float64) bool { return p > 0 && s.rng.Float64() < p }

// gate applies what every API call shares: the count, the token check and
// the random 429s and (for polls) 5xx. It reports whether to go on.
func (s *Server) gate(w http.ResponseWriter, r *http.Request, count *atomic.Int64, with5xx bool) bool {
	count.Add(1)
	if token := s.config().Token; token != "" && r.Header.Get("Authorization") != "Bearer "+token {
		s.n.unauthorized.Add(1)
		s.writeError(w, r, http.StatusUnauthorized, runcomfy.CodeBadToken, "invalid or expired token")
		return false
	}
	s.mu.Lock()
	limited := s.chanceLocked(s.cfg.Rate429)
	retryAfter := limited && s.chanceLocked(s.cfg.RetryAfterShare)
	fail := 0
	if !limited && with5xx && s.chanceLocked(s.cfg.Rate5xx) {
		fail = []int{500, 502, 503}[s.rng.IntN(3)]
	}
	s.mu.Unlock()
	switch {
	case limited:
		s.n.rejected429.Add(1)
		if retryAfter {
			w.Header().Set("Retry-After", "1")
		}
		s.writeError(w, r, http.StatusTooManyRequests, 0, "rate limited")
		return false
	case fail == http.StatusBadGateway:
		// What a proxy in front of the API answers: not JSON.
		s.n.errors5xx.Add(1)
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(fail)
		io.WriteString(w, "<html><body><h1>"+s.echo(r, "502 Bad Gateway")+"</h1></body></html>\n")
		return false
	case fail != 0:
		s.n.errors5xx.Add(1)
		s.writeError(w, r, fail, 0, http.StatusText(fail))
		return false
	}
	return true
}

func (s *Server) submit(w http.ResponseWriter, r *http.Request) {
	if !s.gate(w, r, &s.n.submits, false) {
		return
	}
	if status := s.config().Answers.SubmitRefuse; status != 0 {
		s.n.refused.Add(1)
		s.refuse(w, r, status)
		return
	}
	model := r.PathValue("model")
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		return // the client went away
	}
	canonical, err := canonicalObject(body)
	var inline map[string]string
	if err == nil {
		canonical, inline, err = inlineFiles(canonical)
	}
	var fetched map[string]string
	if err == nil && s.config().FetchInputs {
		fetched, err = fetchInputs(r.Context(), canonical)
	}
	if err != nil {
		s.writeError(w, r, http.StatusUnprocessableEntity, 0, "input: "+err.Error())
		return
	}

	s.mu.Lock()
	if s.cfg.BalanceJobs > 0 && s.seq >= int64(s.cfg.BalanceJobs) {
		s.mu.Unlock()
		s.n.noBalance.Add(1)
		s.writeError(w, r, http.StatusBadRequest, runcomfy.CodeNoBalance, "insufficient balance")
		return
	}
	j := s.createLocked(model, canonical)
	j.inline, j.fetched = inline, fetched
	drop := s.chanceLocked(s.cfg.DropSubmitRate)
	answer := submitOK
	if !drop && s.cfg.Answers.submitFaulty() {
		answer = s.cfg.Answers.pickSubmitAnswer(s.rng.Float64())
	}
	empty := "{}"
	if answer == submitEmpty {
		if s.emptyBodies%2 == 1 {
			empty = "[]"
		}
		s.emptyBodies++
	}
	numeric := s.cfg.Answers.NumericRequestIDs
	delay := s.cfg.SubmitDelay
	s.mu.Unlock()
	s.n.created.Add(1)
	if delay > 0 {
		// The job exists before its id is answered: the window in which a
		// client killed mid-submit leaves a billed job it never heard of.
		time.Sleep(delay)
	}

	// In every case below the job exists and will run, but the client
	// never learns its id.
	switch {
	case drop:
		s.n.dropped.Add(1)
		cutConnection(w)
		return
	case answer != submitOK:
		s.n.createdUnanswered.Add(1)
		s.writeUnanswered(w, r, answer, empty)
		return
	}
	base := baseURL(r, r.Host)
	var id any = j.id
	if numeric {
		id = json.Number(j.id)
	}
	writeJSON(w, http.StatusOK, submitBody{
		RequestID: id,
		StatusURL: base + "/v1/requests/" + j.id + "/status",
		ResultURL: base + "/v1/requests/" + j.id + "/result",
		CancelURL: base + "/v1/requests/" + j.id + "/cancel",
	})
}

// refuse answers a submit refused by Answers.SubmitRefuse.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, status int) {
	if status == http.StatusUnprocessableEntity {
		writeJSON(w, status, validationDetail(func(msg string) string { return s.echo(r, msg) }))
		return
	}
	s.writeError(w, r, status, 0, refusalMessage(status))
}

// writeUnanswered answers a created job's submit without its id; empty is
// the body of a submitEmpty answer.
func (s *Server) writeUnanswered(w http.ResponseWriter, r *http.Request, answer submitAnswer, empty string) {
	switch answer {
	case submit503:
		// A gateway that gave up after the API created the job.
		s.writeError(w, r, http.StatusServiceUnavailable, 0, http.StatusText(http.StatusServiceUnavailable))
	case submitErrorCode:
		s.writeError(w, r, http.StatusOK, 500001, "internal error")
	case submitEmpty:
		writeJSON(w, http.StatusOK, json.RawMessage(empty))
	}
}

// createLocked records a new job with its fate drawn from the RNG.
func (s *Server) createLocked(model string, input json.RawMessage) *job {
	s.seq++
	now := s.cfg.Now()
	portable := s.cfg.PortableIDs
	if portable {
		// The id carries whole milliseconds: the job it describes to
		// another Server must be this one to the millisecond.
		now = now.Truncate(time.Millisecond)
	}
	j := &job{
		model:   model,
		input:   input,
		seq:     s.seq,
		created: now,
		expires: s.chanceLocked(s.cfg.ExpireRate),
		outputs: outputCount(s.outputKindLocked(model), s.cfg.OutputsPerJob),
		cost:    s.cfg.CostUSD,
		kind:    s.outputKindLocked(model),
	}
	if !portable {
		j.id = s.newIDLocked()
	}
	j.queueEnd = now.Add(s.jitterLocked(s.cfg.QueueTime).Truncate(msIf(portable)))
	if n := s.cfg.MaxRunning; n > 0 {
		// The job starts when one of the account's n places frees: the
		// earliest end among the n jobs scheduled last (jobs start in the
		// order they were created).
		if len(s.slots) == n {
			if free := s.slots[0]; free.After(j.queueEnd) {
				j.queueEnd = free
			}
			heap.Pop(&s.slots)
		}
	}
	j.runEnd = j.queueEnd.Add(s.jitterLocked(s.cfg.RunTime).Truncate(msIf(portable)))
	if s.cfg.MaxRunning > 0 {
		heap.Push(&s.slots, j.runEnd)
	}
	switch {
	case s.chanceLocked(s.cfg.FailedStatusRate):
		j.outcome = failStatus
	case s.chanceLocked(s.cfg.FailureRate):
		j.outcome = emptyOutput
	}
	if portable {
		j.id = portableID(s.nonce, j, inputDigest(model, input))
	}
	s.jobs[j.id] = j
	key := model + "\n" + string(input)
	s.byInput[key]++
	if s.byInput[key] > 1 {
		s.duplicates++
	}
	return j
}

// msIf is what durations are truncated to: whole milliseconds for a
// portable id, else nothing (Truncate(0) keeps a duration as it is).
func msIf(portable bool) time.Duration {
	if portable {
		return time.Millisecond
	}
	return 0
}

// findLocked is the job named id: one this Server made or adopted, or,
// under PortableIDs, the one a portable id made elsewhere describes, which
// is adopted from then on.
func (s *Server) findLocked(id string) (*job, bool) {
	if j, ok := s.jobs[id]; ok {
		return j, true
	}
	if !s.cfg.PortableIDs {
		return nil, false
	}
	j, ok := parsePortable(id)
	if !ok {
		return nil, false
	}
	// A request made before this Server started is ahead of all of its
	// own in the queue: seq 0 reports position 1.
	j.cost = s.cfg.CostUSD
	s.jobs[id] = j
	return j, true
}

func (s *Server) jitterLocked(d time.Duration) time.Duration {
	if d <= 0 || s.cfg.Jitter <= 0 {
		return max(d, 0)
	}
	f := 1 + s.cfg.Jitter*(2*s.rng.Float64()-1)
	return time.Duration(max(0, float64(d)*f))
}

// newIDLocked makes a UUID-shaped id from the seeded RNG, unique among
// jobs, or under Answers.NumericRequestIDs a decimal one from the creation
// order (never UUID-shaped, so the two kinds cannot collide).
func (s *Server) newIDLocked() string {
	if s.cfg.Answers.NumericRequestIDs {
		return strconv.FormatInt(1_000_000+s.seq, 10)
	}
	for {
		a, b := s.rng.Uint64(), s.rng.Uint64()
		id := fmt.Sprintf("%08x-%04x-%04x-%04x-%012x",
			a>>32, (a>>16)&0xffff, a&0xffff, b>>48, b&0xffffffffffff)
		if _, taken := s.jobs[id]; !taken {
			return id
		}
	}
}

// stateLocked derives a job's status from the clock. When observe is set,
// the call counts as the client seeing it: the extra status is used up and
// the queue moves on.
func (s *Server) stateLocked(j *job, now time.Time, observe bool) (status string, queuePos int) {
	if j.cancelled {
		return runcomfy.StatusCancelled, 0
	}
	if now.Before(j.queueEnd) {
		// Approximate and O(1): jobs created after the last one seen
		// leaving the queue are ahead of this one if they came earlier.
		return runcomfy.StatusInQueue, int(max(1, j.seq-s.dequeuedSeq))
	}
	if observe && j.seq > s.dequeuedSeq {
		s.dequeuedSeq = j.seq
	}
	if s.cfg.ExtraStatus != "" && !j.extraShown {
		if observe {
			j.extraShown = true
		}
		return s.cfg.ExtraStatus, 0
	}
	if now.Before(j.runEnd) {
		return runcomfy.StatusInProgress, 0
	}
	if j.outcome == failStatus {
		return runcomfy.StatusFailed, 0
	}
	return runcomfy.StatusCompleted, 0
}

// lookup finds the job named in the path, answering 404001 when unknown
// or, for polls (hideYoung), while Answers.NotFoundFor hides it.
func (s *Server) lookup(w http.ResponseWriter, r *http.Request, hideYoung bool) (*job, bool) {
	s.mu.Lock()
	j, ok := s.findLocked(r.PathValue("id"))
	young := ok && hideYoung && s.cfg.Now().Before(j.created.Add(s.cfg.Answers.NotFoundFor))
	s.mu.Unlock()
	switch {
	case !ok:
		s.n.notFound.Add(1)
		s.writeError(w, r, http.StatusNotFound, runcomfy.CodeNotFound, "request not found or expired")
		return nil, false
	case young:
		s.n.notFound.Add(1)
		s.writeError(w, r, http.StatusNotFound, runcomfy.CodeNotFound, "request not found")
		return nil, false
	}
	return j, true
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	if !s.gate(w, r, &s.n.status, true) {
		return
	}
	j, ok := s.lookup(w, r, true)
	if !ok {
		return
	}
	s.mu.Lock()
	st, pos := s.stateLocked(j, s.cfg.Now(), true)
	answers := s.cfg.Answers
	s.mu.Unlock()
	out := statusBody{RequestID: j.id, Status: answers.wireStatus(st)}
	if st == runcomfy.StatusInQueue {
		out.QueuePosition = &pos
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) result(w http.ResponseWriter, r *http.Request) {
	if !s.gate(w, r, &s.n.result, true) {
		return
	}
	j, ok := s.lookup(w, r, true)
	if !ok {
		return
	}
	s.mu.Lock()
	st, pos := s.stateLocked(j, s.cfg.Now(), true)
	ended := !j.cancelled && runcomfy.Terminal(st)
	if ended {
		j.resultFetches++
		if j.seenEnded.IsZero() {
			j.seenEnded = s.cfg.Now()
		}
	}
	gen := j.resultFetches
	answers := s.cfg.Answers
	stall, pad := s.cfg.StallBody, s.cfg.ResultBodyPad
	s.mu.Unlock()

	out := map[string]any{
		"request_id": j.id,
		"status":     answers.wireStatus(st),
		"created_at": j.created.UTC().Format(time.RFC3339Nano),
	}
	if j.model != "" { // an adopted job's model is not in its id
		out["model_id"] = j.model
	}
	if st == runcomfy.StatusInQueue && answers.ResultQueuePosition {
		out["queue_position"] = pos
	}
	if ended {
		out["finished_at"] = j.runEnd.UTC().Format(time.RFC3339Nano)
		if r.URL.Query().Get("include_cost") == "true" {
			if cost, ok := answers.costField(j.cost); ok {
				out["cost"] = cost
			}
		}
		switch j.outcome {
		case succeed:
			out["output"] = outputAnswer(j.kind, baseURL(r, filesHost(r.Host)), j.id, j.outputs, gen)
			out["error"] = nil
		case emptyOutput:
			out["output"] = map[string]any{}
			out["error"] = "generation produced no output"
		case failStatus:
			out["error"] = map[string]any{"code": "generation_failed", "message": "model crashed"}
		}
	}
	writeResult(w, r, out, stall, pad)
}

// padChunk is what ResultBodyPad is written from.
var padChunk = bytes.Repeat([]byte("x"), 64<<10)

// writeResult writes a result answer, padded with pad bytes and its body
// held back for stall, as Config.ResultBodyPad and StallBody say.
func writeResult(w http.ResponseWriter, r *http.Request, out map[string]any, stall time.Duration, pad int) {
	b, err := json.Marshal(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	var head []byte
	if pad > 0 {
		// {"padding":"xxx…","request_id":…}: out is never empty, so
		// b[1:] starts with its first key.
		head = []byte(`{"padding":"`)
		b[0] = ','
		b = append([]byte{'"'}, b...)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(head)+max(pad, 0)+len(b)))
	w.WriteHeader(http.StatusOK)
	if stall > 0 {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		t := time.NewTimer(stall)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return // the client gave up
		}
	}
	if _, err := w.Write(head); err != nil {
		return
	}
	for left := pad; left > 0; left -= len(padChunk) {
		if _, err := w.Write(padChunk[:min(left, len(padChunk))]); err != nil {
			return
		}
	}
	w.Write(b)
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request) {
	if !s.gate(w, r, &s.n.cancel, false) {
		return
	}
	j, ok := s.lookup(w, r, false)
	if !ok {
		return
	}
	s.mu.Lock()
	st, _ := s.stateLocked(j, s.cfg.Now(), true)
	cancelled := st == runcomfy.StatusInQueue // running and finished jobs cannot be cancelled
	if cancelled {
		j.cancelled = true
		st = runcomfy.StatusCancelled
	}
	answers := s.cfg.Answers
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, answers.cancelAnswer(j.id, st, cancelled))
}

func (s *Server) modelInfo(w http.ResponseWriter, r *http.Request) {
	if !s.gate(w, r, &s.n.model, false) {
		return
	}
	if m, ok := s.catalogModel(r.PathValue("model")); ok {
		writeJSON(w, http.StatusOK, catalogBody(m, true, s.config()))
		return
	}
	cfg := s.config()
	writeJSON(w, http.StatusOK, modelBody{
		ModelID:      r.PathValue("model"),
		DisplayName:  r.PathValue("model"),
		BasePriceUSD: cfg.Answers.priceField(cfg.PriceUSD),
		PriceUnit:    cfg.PriceUnit,
	})
}

// file serves /files/{id}/{n}.{ext} (n from 0; .mp4, or .png or .mp3 as
// the job's OutputKind says) with Content-Length and single-range
// ("bytes=N-" or "bytes=N-M") support.
func (s *Server) file(w http.ResponseWriter, r *http.Request) {
	s.n.files.Add(1)
	if r.Header.Get("Authorization") != "" {
		s.n.filesWithAuth.Add(1)
	}
	id := r.PathValue("id")
	gen, _ := strconv.Atoi(r.URL.Query().Get("v"))

	s.mu.Lock()
	j, ok := s.findLocked(id)
	var (
		st  string
		med medium
		n   int
		err error
	)
	if ok {
		st, _ = s.stateLocked(j, s.cfg.Now(), false)
		med, ok = mediumOf(j.kind)
		n, err = strconv.Atoi(strings.TrimSuffix(r.PathValue("name"), med.ext))
	}
	ok = ok && err == nil && n >= 0 && n < j.outputs &&
		st == runcomfy.StatusCompleted && j.outcome == succeed
	expired := ok && j.expires && n == 0 && gen < 2
	truncate := ok && !expired && r.Method == http.MethodGet && s.chanceLocked(s.cfg.TruncateRate)
	s.mu.Unlock()

	switch {
	case !ok:
		s.n.notFound.Add(1)
		http.Error(w, s.echo(r, "404 page not found"), http.StatusNotFound)
		return
	case expired:
		s.n.expired.Add(1)
		http.Error(w, s.echo(r, "link expired"), http.StatusGone)
		return
	}

	data := med.content(id, n)
	start, end, status := parseRange(r.Header.Get("Range"), len(data))
	h := w.Header()
	h.Set("Content-Type", med.contentType)
	h.Set("Accept-Ranges", "bytes")
	h.Set("ETag", fmt.Sprintf(`"%s-%d"`, id, n))
	switch status {
	case http.StatusRequestedRangeNotSatisfiable:
		h.Set("Content-Range", fmt.Sprintf("bytes */%d", len(data)))
		w.WriteHeader(status)
		return
	case http.StatusPartialContent:
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end-1, len(data)))
	}
	body := data[start:end]
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if d := s.config().FileDelay; d > 0 && r.Method == http.MethodGet {
		select { // a slow download: the whole body comes this late
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	if truncate {
		// Content-Length promised the whole body; send half, then drop
		// the connection so the client sees an unexpected EOF.
		s.n.truncated.Add(1)
		w.Write(body[:len(body)/2])
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		panic(http.ErrAbortHandler)
	}
	w.Write(body)
}

// parseRange understands one "bytes=N-" or "bytes=N-M" range. Anything else
// is ignored (the whole file is served, which RFC 9110 allows). The
// returned end is exclusive.
func parseRange(h string, size int) (start, end, status int) {
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, size, http.StatusOK
	}
	first, last, ok := strings.Cut(spec, "-")
	from, err := strconv.Atoi(first)
	if !ok || err != nil || from < 0 {
		return 0, size, http.StatusOK
	}
	to := size - 1
	if last != "" {
		if to, err = strconv.Atoi(last); err != nil || to < from {
			return 0, size, http.StatusOK
		}
		to = min(to, size-1)
	}
	if from >= size {
		return 0, 0, http.StatusRequestedRangeNotSatisfiable
	}
	return from, to + 1, http.StatusPartialContent
}

// cutConnection ends the exchange with no answer at all, as a crashed
// proxy or a network cut would.
func cutConnection(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler) // also closes without answering
}

// filesHost names the API's own listener differently, so that output files
// are on "another host" for the token rule: 127.0.0.1 ↔ localhost. Other
// names are kept (no other name is known to reach this listener).
func filesHost(host string) string {
	name, port, err := net.SplitHostPort(host)
	if err != nil {
		name, port = host, ""
	}
	switch strings.ToLower(strings.Trim(name, "[]")) {
	case "127.0.0.1", "::1":
		name = "localhost"
	case "localhost":
		name = "127.0.0.1"
	default:
		return host
	}
	if port == "" {
		return name
	}
	return net.JoinHostPort(name, port)
}

func baseURL(r *http.Request, host string) string {
	if r.TLS != nil {
		return "https://" + host
	}
	return "http://" + host
}

// canonicalObject re-marshals a JSON object with sorted keys and numbers
// kept as written, so equal inputs compare equal whatever their key order.
func canonicalObject(body []byte) (json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v map[string]any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("want a JSON object: %v", err)
	}
	if v == nil {
		return nil, fmt.Errorf("want a JSON object, got null")
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data after the JSON object")
	}
	return json.Marshal(v)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

// writeError writes the API's error body; under Answers.EchoToken the
// message carries the request's Authorization header.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, status, code int, msg string) {
	body := map[string]any{"error_message": s.echo(r, msg)}
	if code != 0 {
		body["error_code"] = code
	}
	writeJSON(w, status, body)
}

// echo is msg, with the request's Authorization header appended under
// Answers.EchoToken.
func (s *Server) echo(r *http.Request, msg string) string {
	if !s.config().Answers.EchoToken {
		return msg
	}
	return echoAuth(msg, r)
}

// endHeap is a min-heap of times.
type endHeap []time.Time

func (h endHeap) Len() int           { return len(h) }
func (h endHeap) Less(i, j int) bool { return h[i].Before(h[j]) }
func (h endHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *endHeap) Push(x any)        { *h = append(*h, x.(time.Time)) }
func (h *endHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Busy is the time the created jobs spend running at the account, all
// together: with MaxRunning n and a run's wall time w, Busy / (n·w) is the
// share of the account's places the run kept busy.
func (s *Server) Busy() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var d time.Duration
	for _, j := range s.jobs {
		if !j.adopted {
			d += j.runEnd.Sub(j.queueEnd)
		}
	}
	return d
}

// Lag is the mean time from a job's end to the first result answer that
// told of it: how long a finished job's place waited to be seen free.
func (s *Server) Lag() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var sum time.Duration
	n := 0
	for _, j := range s.jobs {
		if !j.adopted && !j.seenEnded.IsZero() {
			sum += j.seenEnded.Sub(j.runEnd)
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / time.Duration(n)
}

// Span is the time from the first job's creation to the last job's end:
// the stretch in which the account had work it could do.
func (s *Server) Span() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var first, last time.Time
	for _, j := range s.jobs {
		if j.adopted {
			continue
		}
		if first.IsZero() || j.created.Before(first) {
			first = j.created
		}
		if j.runEnd.After(last) {
			last = j.runEnd
		}
	}
	return last.Sub(first)
}
