package runner

// A model-based test of the promise that no job is paid for twice and no
// paid request is lost. A simulated API answers each call from shapes drawn
// at random (5xx after creating the job, dropped connections, empty and
// malformed bodies, odd and re-cased statuses, 404001 for a while, 429s),
// runs are stopped at random points, and after every run the ledger and the
// API are held to three invariants:
//
//  1. no input was created at RunComfy more than once (no flag asked for it);
//  2. every request RunComfy created is in the ledger, or its job is
//     unknown (the one state that says "maybe created; look");
//  3. every transition the ledger recorded is an edge of lifecycle.Edges.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"comfybatch/lifecycle"
	"comfybatch/runcomfy"
	"comfybatch/runcomfy/runcomfytest"
	"comfybatch/store"
)

// drawAnswers picks how the simulated API misbehaves in one run.
func drawAnswers(rng *rand.Rand) (runcomfytest.Config, runcomfytest.Answers) {
	pick := func(opts ...string) string { return opts[rng.IntN(len(opts))] }
	share := func(max float64) float64 {
		if rng.IntN(2) == 0 {
			return 0
		}
		return rng.Float64() * max
	}
	a := runcomfytest.Answers{
		SubmitCreated5xx:       share(0.2),
		SubmitCreatedErrorCode: share(0.15),
		SubmitEmptyBody:        share(0.15),
		StatusCase:             pick("", "upper", "title"),
		Succeeded:              rng.IntN(2) == 0,
		Canceled:               rng.IntN(2) == 0,
		NotFoundFor:            time.Duration(rng.IntN(3)) * 40 * time.Millisecond,
		OutputKind:             pick("", "videos", "images", "audio", "nested", "data", "text"),
		CostAs:                 pick("", "string", "missing", "negative", "garbage"),
	}
	if rng.IntN(4) == 0 {
		a.UnknownStatus = "warming_up"
	}
	cfg := runcomfytest.Config{
		QueueTime: time.Duration(rng.IntN(40)) * time.Millisecond,
		RunTime:   time.Duration(rng.IntN(60)) * time.Millisecond,
		Jitter:    0.5,
		Rate429:   share(0.1),
		Rate5xx:   share(0.15),
		// A dropped submit creates the job and cuts the connection.
		DropSubmitRate:   share(0.1),
		FailureRate:      share(0.1),
		FailedStatusRate: share(0.1),
		TruncateRate:     share(0.2),
		CostUSD:          0.25,
		Seed:             rng.Int64(),
	}
	return cfg, a
}

// modelRound runs one manifest through several runs, each stopped at a
// random point, against an API whose misbehaviour is redrawn each run, and
// checks the invariants after each.
func modelRound(t *testing.T, seed uint64, jobs, runs int) {
	rng := rand.New(rand.NewPCG(seed, 0x6c6966))
	cfg, answers := drawAnswers(rng)
	cfg.Answers = answers
	e := newEnv(t, cfg)
	m := manifestOf(t, jobs, fmt.Sprintf("model-%d", seed))
	var lastLog string
	var lastErr error
	for run := 0; run <= runs; run++ {
		if run > 0 {
			c2, a2 := drawAnswers(rng)
			e.srv.Update(func(c *runcomfytest.Config) {
				c.Rate429, c.Rate5xx, c.DropSubmitRate, c.TruncateRate = c2.Rate429, c2.Rate5xx, c2.DropSubmitRate, c2.TruncateRate
				c.Answers = a2
			})
		}
		ctx, cancel := context.WithCancel(context.Background())
		last := run == runs
		if !last {
			// A stop anywhere: both stages at once, as a crash would leave
			// the POSTs on the wire unanswered.
			stopAt := time.Duration(rng.IntN(250)) * time.Millisecond
			time.AfterFunc(stopAt, cancel)
		}
		st, err := store.Open(e.ledger, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var logBuf bytes.Buffer
		_, err = Run(ctx, ctx, Config{Manifest: m, Store: st, API: e.client, HTTP: e.client.HTTPClient(),
			OutDir: filepath.Join(e.dir, "out"), Concurrency: 1 + rng.IntN(8), PollMax: 20 * time.Millisecond, ProgressEvery: -1,
			Sleep: runcomfy.SleepContext, Log: slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		if last {
			lastLog = logBuf.String()
			lastErr = err
		}
		cancel()
		if cerr := st.Close(); cerr != nil {
			t.Fatal(cerr)
		}
		if err != nil && ctx.Err() == nil && !last {
			t.Fatalf("seed %d run %d: %+v (dir %s)", seed, run, err, e.dir)
		}
		checkInvariants(t, seed, run, e)
	}
	// The last run was not stopped: it settled every job, and the test
	// exercised something.
	if e.srv.Stats().Created == 0 {
		t.Fatalf("seed %d: nothing was ever created: the round proves nothing", seed)
	}
	// (Completed is allowed: a download cut on every try is left for the
	// next run, which is no payment question.)
	for id, j := range e.jobs() {
		if !j.State.Settled() && j.State != lifecycle.Completed {
			t.Fatalf("seed %d: job %s is %s after a run that was not stopped (err %v); its log:\n%s", seed, id, j.State, lastErr, grepLines(lastLog, id))
		}
	}
}

func checkInvariants(t *testing.T, seed uint64, run int, e *env) {
	t.Helper()
	// 1. No input created twice.
	if d := e.srv.Duplicates(); d != 0 {
		t.Fatalf("seed %d run %d: %d duplicate submissions at RunComfy", seed, run, d)
	}
	// A fuzz seed's temporary folder has a '#' in its name: escape it, as
	// the store does, or SQLite opens another (empty) file.
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(e.ledger)
	db, err := sql.Open("sqlite3", "file:"+esc+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// 2. Every created request is in the ledger, or its job is unknown.
	byInput := map[string]struct {
		state lifecycle.State
		reqs  map[string]bool
	}{}
	rows, err := db.Query("SELECT j.id, j.input, j.state, coalesce(s.request_id, '') FROM jobs j LEFT JOIN submissions s ON s.job_id = j.id")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, input, req string
		var st lifecycle.State
		if err := rows.Scan(&id, &input, &st, &req); err != nil {
			t.Fatal(err)
		}
		k := canonical(t, input)
		v := byInput[k]
		if v.reqs == nil {
			v.reqs = map[string]bool{}
		}
		v.state = st
		if req != "" {
			v.reqs[req] = true
		}
		byInput[k] = v
	}
	rows.Close()
	for _, j := range e.srv.Jobs() {
		v, ok := byInput[canonical(t, string(j.Input))]
		if !ok {
			t.Fatalf("seed %d run %d: RunComfy created %s for an input the ledger does not have", seed, run, j.RequestID)
		}
		if !v.reqs[j.RequestID] && v.state != lifecycle.Unknown {
			t.Fatalf("seed %d run %d: request %s was created at RunComfy, but its job is %s without it in the ledger", seed, run, j.RequestID, v.state)
		}
	}
	// 3. Every recorded transition is an edge.
	ev, err := db.Query("SELECT job_id, from_state, to_state FROM events")
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Close()
	for ev.Next() {
		var id string
		var from, to lifecycle.State
		if err := ev.Scan(&id, &from, &to); err != nil {
			t.Fatal(err)
		}
		if from == "" && to == lifecycle.Pending {
			continue // added
		}
		if !lifecycle.Allowed(from, to) {
			t.Fatalf("seed %d run %d: job %s went %s → %s, which is no edge", seed, run, id, from, to)
		}
	}
}

func canonical(t *testing.T, s string) string {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("input %q: %v", s, err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// TestModelNeverPaysTwice runs a few seconds of random rounds; the fuzz
// target below runs as long as it is asked to.
func TestModelNeverPaysTwice(t *testing.T) {
	rounds := 6
	if testing.Short() {
		rounds = 2
	}
	for i := range rounds {
		seed := uint64(time.Now().UnixNano()) + uint64(i)
		t.Run(fmt.Sprint(seed), func(t *testing.T) { modelRound(t, seed, 12, 4) })
	}
}

// FuzzModel: go test -run XXX -fuzz FuzzModel -fuzztime 60s ./runner
func FuzzModel(f *testing.F) {
	f.Add(uint64(1), uint8(8), uint8(3))
	f.Add(uint64(42), uint8(3), uint8(5))
	f.Fuzz(func(t *testing.T, seed uint64, jobs, runs uint8) {
		modelRound(t, seed, 1+int(jobs)%16, 1+int(runs)%5)
	})
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) || strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
