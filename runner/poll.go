package runner

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultPollMax is the longest wait between two polls of one job.
const DefaultPollMax = 15 * time.Second

// Typical is what a run has learned of how long its jobs take from
// submission to the end, from the jobs it has seen finish: the median and
// the 90th percentile. Samples is 0 until it knows anything.
type Typical struct {
	Samples  int
	P50, P90 time.Duration
}

// minSamples is how many finished jobs a run must have seen before it
// trusts what they say about the next ones.
const minSamples = 4

// PollInterval says how long to wait before polling a job again. It is a pure
// function so that its shape can be table-tested. polls is how many polls were
// made so far, age the time since submission, queuePos the last reported
// queue position (0 when not queued or unknown), typ what the run learned of
// its jobs' durations, limit the longest wait (--poll-max).
//
// Every poll is one call to the result endpoint, which also answers the
// status, so fewer polls is fewer calls. The shape:
//   - until the run has seen a few jobs finish, the first poll is immediate
//     (a model that answers at once, or the simulated API, costs no waiting)
//     and the next ones follow every second while the job is young;
//   - once it has, a job's polls are aimed at the run's typical duration: the
//     first at the median, the next at the 90th percentile. For jobs of 2–4 s
//     that is 1.6 calls per job where a fixed 2 s status poller makes three,
//     and half the jobs are seen within half a second of their end (a target
//     just polled at is not polled again because newer samples moved it);
//   - past that, a tenth of the job's age, at least a second: a job that has
//     run for five minutes will not end in the next second;
//   - a deep queue position stretches the wait (half a second per job ahead):
//     the queue drains at the service's pace, not at our polls';
//   - never longer than limit.
func PollInterval(polls int, age time.Duration, queuePos int, typ Typical, limit time.Duration) time.Duration {
	if limit <= 0 {
		limit = DefaultPollMax
	}
	age = max(age, 0)
	learned := typ.Samples >= minSamples
	// A target only a sliver ahead is one just polled at, moved a little by
	// newer samples: polling it again would be a wasted call.
	sliver := (typ.P90 - typ.P50) / 4
	var d time.Duration
	switch {
	case polls <= 0 && !learned:
		d = 0
	case polls <= 0:
		d = max(typ.P50-age, 0)
	case learned && typ.P50-age > sliver:
		d = typ.P50 - age
	case learned && typ.P90-age > sliver:
		d = typ.P90 - age
	default:
		// Past the typical end, a tenth of the age, at least a second —
		// or, for a model whose jobs take a second or two, a quarter of
		// its 90th percentile (a quarter second at least): a half-second
		// job is not left finished for a second, a slot at RunComfy idle.
		floor := time.Second
		if learned {
			floor = min(time.Second, max(typ.P90/4, 250*time.Millisecond))
		}
		d = max(floor, age/10)
	}
	if queuePos > 0 && polls > 0 {
		// The position comes from an earlier poll, so the first has none.
		d = max(d, time.Duration(min(queuePos, 1<<20))*(time.Second/2))
	}
	return min(d, limit)
}

// durations learns the run's typical job duration from the jobs that
// finished most recently, shared by every worker. A window rather than all
// history, so that it follows a queue that grows or drains during the run.
type durations struct {
	mu      sync.Mutex
	window  [128]time.Duration
	sorted  [128]time.Duration // scratch, to find the quantiles
	n       int                // samples recorded, all time
	typical Typical
}

// add records how long a finished job took.
func (d *durations) add(took time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.window[d.n%len(d.window)] = max(took, 0)
	d.n++
	s := d.sorted[:min(d.n, len(d.window))]
	copy(s, d.window[:])
	slices.Sort(s)
	d.typical = Typical{Samples: len(s), P50: s[len(s)/2], P90: s[len(s)*9/10]}
}

func (d *durations) get() Typical {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.typical
}

// samples returns the window, oldest first.
func (d *durations) samples() []time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := min(d.n, len(d.window))
	out := make([]time.Duration, 0, n)
	for i := d.n - n; i < d.n; i++ {
		out = append(out, d.window[i%len(d.window)])
	}
	return out
}

// timings are the durations learned per model: models differ by minutes.
// They are seeded from the ledger, so a run polls well from its first job,
// and saved back at its end.
type timings struct {
	mu      sync.Mutex
	byModel map[string]*durations
	learned atomic.Bool // a job finished in this run: there is something new to save
}

// add records how long one of a model's jobs took.
func (t *timings) add(model string, took time.Duration) {
	t.of(model).add(took)
	t.learned.Store(true)
}

func (t *timings) of(model string) *durations {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byModel == nil {
		t.byModel = map[string]*durations{}
	}
	d, ok := t.byModel[model]
	if !ok {
		d = &durations{}
		t.byModel[model] = d
	}
	return d
}

func (t *timings) seed(byModel map[string][]time.Duration) {
	for model, ds := range byModel {
		d := t.of(model)
		for _, x := range ds {
			d.add(x)
		}
	}
}

func (t *timings) all() map[string][]time.Duration {
	t.mu.Lock()
	models := make(map[string]*durations, len(t.byModel))
	for m, d := range t.byModel {
		models[m] = d
	}
	t.mu.Unlock()
	out := make(map[string][]time.Duration, len(models))
	for m, d := range models {
		if s := d.samples(); len(s) > 0 {
			out[m] = s
		}
	}
	return out
}
