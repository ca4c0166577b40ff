package runner

import (
	"context"
	"math"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"comfybatch/lifecycle"
	"comfybatch/runcomfy"
	"comfybatch/runcomfy/runcomfytest"
	"comfybatch/store"
)

func TestPollInterval(t *testing.T) {
	const s = time.Second
	const ms = time.Millisecond
	none := Typical{}
	jobs3s := Typical{Samples: 50, P65: 3 * s, P95: 3800 * ms} // jobs of 2–4 s
	instant := Typical{Samples: 50}
	few := Typical{Samples: minSamples - 1, P65: 3 * s, P95: 4 * s}
	long := Typical{Samples: 50, P65: 10 * time.Minute, P95: 20 * time.Minute}
	huge := Typical{Samples: 50, P65: time.Duration(math.MaxInt64), P95: time.Duration(math.MaxInt64)}
	cases := []struct {
		name     string
		polls    int
		age      time.Duration
		queuePos int
		aimed    Aim
		typ      Typical
		max      time.Duration
		want     time.Duration
	}{
		// Nothing learned yet: the old shape.
		{"first poll is immediate", 0, 0, 0, AimNone, none, 15 * s, 0},
		{"too few samples to trust", 0, 0, 0, AimNone, few, 15 * s, 0},
		{"young job: one second", 1, 2 * s, 0, AimNone, none, 15 * s, s},
		{"a tenth of the age", 5, 40 * s, 0, AimNone, none, 15 * s, 4 * s},
		{"capped by max", 9, 10 * time.Minute, 0, AimNone, none, 15 * s, 15 * s},
		{"custom max", 9, 10 * time.Minute, 0, AimNone, none, 3 * s, 3 * s},
		{"zero max means default", 9, 10 * time.Minute, 0, AimNone, none, 0, DefaultPollMax},
		{"negative max means default", 9, 10 * time.Minute, 0, AimNone, none, -s, DefaultPollMax},
		{"deep queue stretches", 2, 3 * s, 20, AimNone, none, 15 * s, 10 * s},
		{"deep queue capped", 2, 3 * s, 1000, AimNone, none, 15 * s, 15 * s},
		{"huge queue position does not overflow", 2, 3 * s, math.MaxInt, AimNone, none, 15 * s, 15 * s},
		{"negative queue position is ignored", 2, 3 * s, -5, AimNone, none, 15 * s, s},
		{"huge age does not overflow", 2, time.Duration(math.MaxInt64), 0, AimNone, none, 15 * s, 15 * s},
		{"negative age (clock step) counts as zero", 1, -time.Hour, 0, AimNone, none, 15 * s, s},
		{"shallow queue keeps age rule", 3, 30 * s, 2, AimNone, none, 15 * s, 3 * s},

		// Learned: aim at the 65th percentile, then the 95th (the table's
		// jobs3s: P65 3 s, P95 3.8 s).
		{"first poll at the typical end", 0, 0, 0, AimNone, jobs3s, 15 * s, 3 * s},
		{"first poll of a resumed job past it: now", 0, 5 * s, 0, AimNone, jobs3s, 15 * s, 0},
		{"first poll after a slow submit: the rest of it", 0, 500 * ms, 0, AimNone, jobs3s, 15 * s, 2500 * ms},
		{"second poll at the late end", 1, 3 * s, 0, AimTypical, jobs3s, 15 * s, 800 * ms},
		{"learned after polls began: the typical end first", 2, 2 * s, 0, AimNone, jobs3s, 15 * s, s},
		{"past the late end: the age rule, a quarter of it", 2, 3900 * ms, 0, AimLate, jobs3s, 15 * s, 950 * ms},
		{"typical end moved past a poll at it: on to the late end", 1, 3 * s, 0, AimTypical, Typical{Samples: 50, P65: 3100 * ms, P95: 3800 * ms}, 15 * s, 800 * ms},
		{"late end moved past a poll at it: the age rule", 2, 3800 * ms, 0, AimLate, Typical{Samples: 50, P65: 3 * s, P95: 3900 * ms}, 15 * s, 975 * ms},
		{"half-second jobs past their late end: a quarter of it", 2, 900 * ms, 0, AimLate, Typical{Samples: 50, P65: 500 * ms, P95: 800 * ms}, 15 * s, 250 * ms},
		{"long jobs past their late end: a second at least", 3, 5 * s, 0, AimLate, Typical{Samples: 50, P65: 3 * s, P95: 4500 * ms}, 15 * s, s},
		{"one learned value, both quantiles maxed: no overflow", 1, 0, 0, AimNone, Typical{Samples: 50, P95: time.Duration(math.MaxInt64)}, 15 * s, 15 * s},
		{"instant jobs: first poll immediate", 0, 0, 0, AimNone, instant, 15 * s, 0},
		{"instant jobs, still running: a quarter second", 1, 10 * ms, 0, AimNone, instant, 15 * s, 250 * ms},
		{"long jobs: the typical end capped by max", 0, 0, 0, AimNone, long, 15 * s, 15 * s},
		{"long jobs: polls before the typical end capped too", 4, time.Minute, 0, AimNone, long, 15 * s, 15 * s},
		{"huge learned durations do not overflow", 0, 0, 0, AimNone, huge, 15 * s, 15 * s},
		{"queue stretches a learned wait", 1, 3 * s, 30, AimNone, jobs3s, 15 * s, 15 * s},
		{"queue position not used before any poll", 0, 0, 30, AimNone, jobs3s, 15 * s, 3 * s},
	}
	for _, c := range cases {
		// Every job polls as a scout would: nothing waits on others here.
		p := PollState{Polls: c.polls, Age: c.age, Since: c.age, QueuePos: c.queuePos, Scout: true, Aimed: c.aimed}
		if got := PollInterval(p, c.typ, c.max); got.Wait != c.want || got.UntilNews {
			t.Errorf("%s: PollInterval(%+v, %+v, %v) = %+v; want %v", c.name, p, c.typ, c.max, got, c.want)
		}
	}
}

// While a model's target is not known, only its scouts poll; the others
// wait for news, polled at least every limit anyway.
func TestPollIntervalWaitsOnScouts(t *testing.T) {
	const s = time.Second
	const ms = time.Millisecond
	cold := Typical{}
	first := Typical{Samples: 4, P65: 2100 * ms, P95: 2200 * ms, Open65: true, Open95: true} // the 4 shortest of 64 ended
	half := Typical{Samples: 32, P65: 3 * s, P95: 3200 * ms, Open95: true}                   // half ended, the 90th not yet
	known := Typical{Samples: 60, P65: 3 * s, P95: 3800 * ms}
	cases := []struct {
		name     string
		p        PollState
		typ      Typical
		want     time.Duration
		wantNews bool
	}{
		{"cold, not a scout: wait for news, at most the limit", PollState{}, cold, 15 * s, true},
		{"cold scout: at once", PollState{Scout: true}, cold, 0, false},
		{"cold scout, polled: a second", PollState{Polls: 1, Age: s, Since: s, Scout: true}, cold, s, false},
		{"the short ones ended: still waiting", PollState{Age: 2200 * ms, Since: 2200 * ms}, first, 12800 * ms, true},
		{"a scout meanwhile: a second", PollState{Polls: 2, Age: 2200 * ms, Since: 200 * ms, Scout: true}, first, s, false},
		{"waited the limit: poll now", PollState{Polls: 1, Age: 40 * s, Since: 15 * s}, first, 0, true},
		{"waited past the limit: poll now", PollState{Polls: 1, Age: 40 * s, Since: 20 * s}, first, 0, true},
		{"median known: aim at it", PollState{Age: 2 * s, Since: 2 * s}, half, s, false},
		{"median known, passed: at it now", PollState{Age: 3100 * ms, Since: 3100 * ms}, half, 0, false},
		{"polled at the median, the 90th open: wait for news", PollState{Polls: 1, Age: 3100 * ms, Since: 100 * ms}, half, 14900 * ms, true},
		{"the same as a scout: the cold pace", PollState{Polls: 1, Age: 3100 * ms, Since: 100 * ms, Scout: true}, half, s, false},
		{"too few samples: as cold", PollState{}, Typical{Samples: 3, P65: s, P95: s}, 15 * s, true},
		{"both known: the 95th", PollState{Polls: 1, Age: 3 * s, Since: 0, Aimed: AimTypical}, known, 800 * ms, false},
		{"a resumed job polled past both ends: the age rule", PollState{Polls: 1, Age: 5 * s, Aimed: AimTypical}, known, 950 * ms, false},
		{"the typical end, first polled past by a scout: on to the 95th", PollState{Polls: 3, Age: 3200 * ms, Scout: true}, known, 600 * ms, false},
		{"limit set by the user", PollState{Since: s}, cold, 2 * s, true},
		{"clock step back: the limit", PollState{Since: -s}, cold, 15 * s, true},
	}
	for _, c := range cases {
		limit := 15 * s
		if c.name == "limit set by the user" {
			limit = 3 * s
		}
		if got := PollInterval(c.p, c.typ, limit); got.Wait != c.want || got.UntilNews != c.wantNews {
			t.Errorf("%s: PollInterval(%+v, %+v) = %+v; want %v, %v", c.name, c.p, c.typ, got, c.want, c.wantNews)
		}
	}
}

func TestQuantilesCountJobsStillRunning(t *testing.T) {
	const s = time.Second
	secs := func(xs ...float64) []time.Duration {
		var out []time.Duration
		for _, x := range xs {
			out = append(out, time.Duration(x*float64(s)))
		}
		return out
	}
	cases := []struct {
		name        string
		done, alive []time.Duration
		want        Typical
	}{
		{"nothing", nil, nil, Typical{Open65: true, Open95: true}},
		{"only running", nil, secs(1, 2), Typical{P65: 2 * s, P95: 2 * s, Open65: true, Open95: true}},
		{"all ended: the sorted sample's quantiles", secs(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), nil, Typical{Samples: 10, P65: 7 * s, P95: 10 * s}},
		{"one ended", secs(4), nil, Typical{Samples: 1, P65: 4 * s, P95: 4 * s}},
		{"the 4 shortest of 64 ended: nothing known", secs(2, 2.05, 2.1, 2.15), secs(60 * 2.2)[0:1], Typical{}}, // replaced below
		{"half ended: the 65th is not known", secs(2, 2.2, 2.4, 2.6, 2.8), secs(3, 3, 3, 3, 3), Typical{Samples: 5, P65: 3 * s, P95: 3 * s, Open65: true, Open95: true}},
		{"most ended, the rest seen running at 3 s: the 95th open", secs(2, 2.2, 2.4, 2.6, 2.7, 2.8, 2.9), secs(3, 3, 3), Typical{Samples: 7, P65: 2900 * time.Millisecond, P95: 3 * s, Open95: true}},
		{"a job seen running at 1.5 s could end after 2 s: at risk until then", secs(1, 2, 3), secs(1.5), Typical{Samples: 3, P65: 3 * s, P95: 3 * s}},
		{"running jobs young: no effect on what ended before", secs(5, 6, 7), secs(1, 1, 1), Typical{Samples: 3, P65: 6 * s, P95: 7 * s}},
		{"ends and a running job at the same age: the ends first", secs(2, 2, 2), secs(2), Typical{Samples: 3, P65: 2 * s, P95: 2 * s, Open95: true}},
		{"negative durations count as zero", secs(-1, -1, 3), nil, Typical{Samples: 3, P65: 0, P95: 3 * s}},
	}
	// 4 of 64 ended, the other 60 seen running just after: far from half.
	cases[4].done = secs(2, 2.05, 2.1, 2.15)
	cases[4].alive = nil
	for range 60 {
		cases[4].alive = append(cases[4].alive, 2200*time.Millisecond)
	}
	cases[4].want = Typical{Samples: 4, P65: 2200 * time.Millisecond, P95: 2200 * time.Millisecond, Open65: true, Open95: true}
	for _, c := range cases {
		if got := quantiles(c.done, c.alive); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: quantiles(%v, %v) = %+v, want %+v", c.name, c.done, c.alive, got, c.want)
		}
	}
}

func TestDurationsLearnsQuantilesOfRecentJobs(t *testing.T) {
	var d durations
	if got := d.get(); !reflect.DeepEqual(got, Typical{Open65: true, Open95: true}) {
		t.Fatalf("nothing learned yet: %+v", got)
	}
	for i := 1; i <= 10; i++ {
		d.add(time.Duration(i) * time.Second)
	}
	if got := d.get(); got.Samples != 10 || got.P65 != 7*time.Second || got.P95 != 10*time.Second || got.Open65 || got.Open95 {
		t.Fatalf("after 1..10 s: %+v, want P65 7 s, P95 10 s", got)
	} else if n := len(got.Aims); n == 0 || got.Aims[n-1] != got.P95 {
		t.Fatalf("after 1..10 s: aims %v do not end at the 95th", got.Aims)
	}
	// The window forgets: after a full window of 1-minute jobs the early
	// short ones no longer count.
	for range len(d.window) {
		d.add(time.Minute)
	}
	if got := d.get(); got.P65 != time.Minute || got.P95 != time.Minute || got.Samples != len(d.window) {
		t.Fatalf("after a window of 1 min jobs: %+v", got)
	}
	d.add(-time.Second) // a clock oddity counts as instant, not as negative
	if got := d.get(); got.P65 != time.Minute {
		t.Fatalf("one odd sample moved the median: %+v", got)
	}
}

func TestTookPrefersTheServersTimes(t *testing.T) {
	const at = "2026-01-02T03:04:05Z"
	cases := []struct {
		name              string
		created, finished string
		seen, want        time.Duration
	}{
		{"server's duration", at, "2026-01-02T03:04:08.5Z", 4 * time.Second, 3500 * time.Millisecond},
		{"no times: what we saw", "", "", 4 * time.Second, 4 * time.Second},
		{"unparsable: what we saw", at, "yesterday", 4 * time.Second, 4 * time.Second},
		{"longer than we waited: clock oddity", at, "2026-01-02T03:05:05Z", 4 * time.Second, 4 * time.Second},
		{"finished before created: clock oddity", at, "2026-01-02T03:04:00Z", 4 * time.Second, 4 * time.Second},
		{"instant", at, at, 20 * time.Millisecond, 0},
	}
	for _, c := range cases {
		res := runcomfy.Result{CreatedAt: c.created, FinishedAt: c.finished}
		if got := took(res, c.seen); got != c.want {
			t.Errorf("%s: took = %v, want %v", c.name, got, c.want)
		}
	}
}

// What a run learns of a model's job durations is kept in the ledger, and
// the next run starts from it: its first polls aim at the typical end
// instead of every second.
func TestDurationsOutliveTheRun(t *testing.T) {
	e := newEnv(t, runcomfytest.Config{RunTime: 600 * time.Millisecond})
	if _, err := e.run(manifestOf(t, 8, "learn"), func(c *Config) { c.PollMax = time.Second }); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(e.ledger, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	learned, err := st.Durations(context.Background())
	st.Close()
	if err != nil || len(learned[model]) != 8 {
		t.Fatalf("learned %v, %v; want 8 samples for %s", learned, err, model)
	}
	for _, d := range learned[model] {
		if d < 500*time.Millisecond || d > 5*time.Second {
			t.Fatalf("a sample of %v for jobs of 600 ms", d)
		}
	}
	// The second run's jobs are polled at the learned median: about two
	// result calls a job, where a fresh run polls every second from the
	// first instant.
	before := e.srv.Stats().Result
	if _, err := e.run(manifestOf(t, 8, "second"), func(c *Config) { c.PollMax = time.Second }); err != nil {
		t.Fatal(err)
	}
	if calls := float64(e.srv.Stats().Result-before) / 8; calls > 2.5 {
		t.Fatalf("%.2f result calls a job on a ledger that knows the model's durations", calls)
	}
}

// A first wave of jobs of a model the run knows nothing of: a few scouts
// poll, the others wait for what they learn and are polled once, when it
// says the jobs are done. With every job polling on its own, each would
// make two or three calls. The longest wait is set far beyond the test's
// life, so a job left waiting on news that never comes hangs the run.
func TestScoutsPollForAColdModel(t *testing.T) {
	const jobs = 32
	fake := runcomfytest.New(runcomfytest.Config{RunTime: time.Second, Token: "scout-token"})
	meter := newPollMeter(fake)
	ts := httptest.NewServer(meter)
	t.Cleanup(ts.Close)
	e := envBehind(t, fake, ts.URL, "scout-token")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := store.Open(e.ledger, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sum, err := Run(ctx, ctx, Config{Manifest: manifestOf(t, jobs, "cold"), Store: st, API: e.client, HTTP: e.client.HTTPClient(),
		OutDir: filepath.Join(e.dir, "out"), Concurrency: jobs, PollMax: time.Hour, ProgressEvery: -1})
	if err != nil || sum.Counts[lifecycle.Done] != jobs {
		t.Fatalf("run: %v, %v; want %d done", err, sum.Counts, jobs)
	}
	meter.mu.Lock()
	defer meter.mu.Unlock()
	var scouted, once int
	for _, n := range meter.perJob {
		switch {
		case n == 1:
			once++
		default:
			scouted++
		}
	}
	t.Logf("%d calls for %d jobs: %d polled once, %d more often", meter.calls, jobs, once, scouted)
	if scouted > scouts || float64(meter.calls)/jobs >= 2 {
		t.Errorf("%d jobs polled more than once, %d calls for %d jobs; want at most %d scouts and under 2 calls a job", scouted, meter.calls, jobs, scouts)
	}
}

// planLevels spends polls where a model's spread is wide for its length:
// jobs of 2–4 s keep two aims, the 70th and the 95th percentile (about 1.4
// polls a job, as the README says), jobs of 0.2–0.8 s get more, until a
// finished job waits at most a fifth of the mean to be seen; jobs that all
// take as long need one.
func TestPlanLevels(t *testing.T) {
	spread := func(lo, hi time.Duration, n int) []time.Duration {
		out := make([]time.Duration, n)
		for i := range out {
			out[i] = lo + (hi-lo)*time.Duration(i)/time.Duration(n-1)
		}
		return out
	}
	cases := []struct {
		name          string
		done          []time.Duration
		minAims, most int
		wantLevels    []float64 // when set, exactly these
	}{
		{"jobs of 2–4 s: two aims", spread(2*time.Second, 4*time.Second, 128), 2, 2, []float64{0.70, 0.95}},
		{"jobs of 0.2–0.8 s: more aims", spread(200*time.Millisecond, 800*time.Millisecond, 128), 3, 4, nil},
		{"jobs that all take 3 s: one aim", spread(3*time.Second, 3*time.Second, 64), 1, 1, nil},
	}
	for _, c := range cases {
		ends, _ := survival(c.done, nil)
		levels := planLevels(ends)
		aims := aimsAt(ends, levels)
		if len(aims) < c.minAims || len(aims) > c.most {
			t.Errorf("%s: levels %v, aims %v; want %d to %d aims", c.name, levels, aims, c.minAims, c.most)
		}
		if c.wantLevels != nil && !reflect.DeepEqual(levels, c.wantLevels) {
			t.Errorf("%s: levels %v, want %v", c.name, levels, c.wantLevels)
		}
		// The promise, counted job by job: each is seen by the first aim at
		// or past its end.
		var idle, mean time.Duration
		for _, d := range c.done {
			mean += d
			for _, a := range aims {
				if a >= d {
					idle += a - d
					break
				}
			}
		}
		if idle > time.Duration(float64(mean)*idleShare) {
			t.Errorf("%s: aims %v leave jobs unseen %v in all, over a fifth of their %v", c.name, aims, idle, mean)
		}
	}
}

// Planned aims are polled in turn, each once, then the late pace.
func TestPollIntervalFollowsPlannedAims(t *testing.T) {
	const ms = time.Millisecond
	typ := Typical{Samples: 100, P65: 590 * ms, P95: 770 * ms, Aims: []time.Duration{400 * ms, 600 * ms, 700 * ms, 770 * ms}}
	p := PollState{Scout: true}
	var got []time.Duration
	for range 6 {
		plan := PollInterval(p, typ, 15*time.Second)
		p.Age += plan.Wait
		got = append(got, p.Age)
		p.Polls, p.Since, p.Aimed = p.Polls+1, 0, max(p.Aimed, plan.Aim)
	}
	want := []time.Duration{400 * ms, 600 * ms, 700 * ms, 770 * ms, 1020 * ms, 1270 * ms}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("polled at %v, want %v", got, want)
	}
}

// Durations from a damaged or hostile ledger cannot hang the planning: the
// late polls counted past the 95th stop at the largest duration there is.
func TestPlanLevelsWithHugeDurations(t *testing.T) {
	done := make([]time.Duration, 40)
	for i := range done {
		done[i] = time.Second
	}
	done[39] = time.Duration(math.MaxInt64)
	finished := make(chan []float64)
	go func() {
		ends, _ := survival(done, nil)
		finished <- planLevels(ends)
	}()
	select {
	case levels := <-finished:
		if len(levels) == 0 || levels[len(levels)-1] != 0.95 {
			t.Fatalf("levels %v", levels)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("planning did not end")
	}
}
