package runner

import (
	"context"
	"math"
	"testing"
	"time"

	"comfybatch/runcomfy"
	"comfybatch/runcomfy/runcomfytest"
	"comfybatch/store"
)

func TestPollInterval(t *testing.T) {
	const s = time.Second
	const ms = time.Millisecond
	none := Typical{}
	jobs3s := Typical{Samples: 50, P50: 3 * s, P90: 3800 * ms} // jobs of 2–4 s
	instant := Typical{Samples: 50}
	few := Typical{Samples: minSamples - 1, P50: 3 * s, P90: 4 * s}
	long := Typical{Samples: 50, P50: 10 * time.Minute, P90: 20 * time.Minute}
	huge := Typical{Samples: 50, P50: time.Duration(math.MaxInt64), P90: time.Duration(math.MaxInt64)}
	cases := []struct {
		name     string
		polls    int
		age      time.Duration
		queuePos int
		typ      Typical
		max      time.Duration
		want     time.Duration
	}{
		// Nothing learned yet: the old shape.
		{"first poll is immediate", 0, 0, 0, none, 15 * s, 0},
		{"too few samples to trust", 0, 0, 0, few, 15 * s, 0},
		{"young job: one second", 1, 2 * s, 0, none, 15 * s, s},
		{"a tenth of the age", 5, 40 * s, 0, none, 15 * s, 4 * s},
		{"capped by max", 9, 10 * time.Minute, 0, none, 15 * s, 15 * s},
		{"custom max", 9, 10 * time.Minute, 0, none, 3 * s, 3 * s},
		{"zero max means default", 9, 10 * time.Minute, 0, none, 0, DefaultPollMax},
		{"negative max means default", 9, 10 * time.Minute, 0, none, -s, DefaultPollMax},
		{"deep queue stretches", 2, 3 * s, 20, none, 15 * s, 10 * s},
		{"deep queue capped", 2, 3 * s, 1000, none, 15 * s, 15 * s},
		{"huge queue position does not overflow", 2, 3 * s, math.MaxInt, none, 15 * s, 15 * s},
		{"negative queue position is ignored", 2, 3 * s, -5, none, 15 * s, s},
		{"huge age does not overflow", 2, time.Duration(math.MaxInt64), 0, none, 15 * s, 15 * s},
		{"negative age (clock step) counts as zero", 1, -time.Hour, 0, none, 15 * s, s},
		{"shallow queue keeps age rule", 3, 30 * s, 2, none, 15 * s, 3 * s},

		// Learned: aim at the median, then the 90th percentile.
		{"first poll at the median", 0, 0, 0, jobs3s, 15 * s, 3 * s},
		{"first poll of a resumed job past the median: now", 0, 5 * s, 0, jobs3s, 15 * s, 0},
		{"first poll after a slow submit: the rest of the median", 0, 500 * ms, 0, jobs3s, 15 * s, 2500 * ms},
		{"second poll at the 90th percentile", 1, 3 * s, 0, jobs3s, 15 * s, 800 * ms},
		{"learned after polls began: the median first", 2, 2 * s, 0, jobs3s, 15 * s, s},
		{"past the 90th percentile: the age rule, a quarter of the 90th", 2, 3900 * ms, 0, jobs3s, 15 * s, 950 * ms},
		{"median moved a little past a poll at it: on to the 90th", 1, 3 * s, 0, Typical{Samples: 50, P50: 3100 * ms, P90: 3800 * ms}, 15 * s, 800 * ms},
		{"90th moved a little past a poll at it: the age rule", 2, 3800 * ms, 0, Typical{Samples: 50, P50: 3 * s, P90: 3900 * ms}, 15 * s, 975 * ms},
		{"half-second jobs past their 90th: a quarter of it", 2, 900 * ms, 0, Typical{Samples: 50, P50: 500 * ms, P90: 800 * ms}, 15 * s, 250 * ms},
		{"long jobs past their 90th: a second at least", 3, 5 * s, 0, Typical{Samples: 50, P50: 3 * s, P90: 4500 * ms}, 15 * s, s},
		{"one learned value, both quantiles maxed: no overflow", 1, 0, 0, Typical{Samples: 50, P90: time.Duration(math.MaxInt64)}, 15 * s, 15 * s},
		{"instant jobs: first poll immediate", 0, 0, 0, instant, 15 * s, 0},
		{"instant jobs, still running: a quarter second", 1, 10 * ms, 0, instant, 15 * s, 250 * ms},
		{"long jobs: the median capped by max", 0, 0, 0, long, 15 * s, 15 * s},
		{"long jobs: polls before the median capped too", 4, time.Minute, 0, long, 15 * s, 15 * s},
		{"huge learned durations do not overflow", 0, 0, 0, huge, 15 * s, 15 * s},
		{"queue stretches a learned wait", 1, 3 * s, 30, jobs3s, 15 * s, 15 * s},
		{"queue position not used before any poll", 0, 0, 30, jobs3s, 15 * s, 3 * s},
	}
	for _, c := range cases {
		if got := PollInterval(c.polls, c.age, c.queuePos, c.typ, c.max); got != c.want {
			t.Errorf("%s: PollInterval(%d, %v, %d, %+v, %v) = %v, want %v", c.name, c.polls, c.age, c.queuePos, c.typ, c.max, got, c.want)
		}
	}
}

func TestDurationsLearnsQuantilesOfRecentJobs(t *testing.T) {
	var d durations
	if got := d.get(); got != (Typical{}) {
		t.Fatalf("nothing learned yet: %+v", got)
	}
	for i := 1; i <= 10; i++ {
		d.add(time.Duration(i) * time.Second)
	}
	if got, want := d.get(), (Typical{Samples: 10, P50: 6 * time.Second, P90: 10 * time.Second}); got != want {
		t.Fatalf("after 1..10 s: %+v, want %+v", got, want)
	}
	// The window forgets: after a full window of 1-minute jobs the early
	// short ones no longer count.
	for range len(d.window) {
		d.add(time.Minute)
	}
	if got := d.get(); got.P50 != time.Minute || got.P90 != time.Minute || got.Samples != len(d.window) {
		t.Fatalf("after a window of 1 min jobs: %+v", got)
	}
	d.add(-time.Second) // a clock oddity counts as instant, not as negative
	if got := d.get(); got.P50 != time.Minute {
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
