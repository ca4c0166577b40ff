package runner

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultPollMax is the longest wait between two polls of one job.
const DefaultPollMax = 15 * time.Second

// Typical is what a run knows of how long a model's jobs take from
// submission to the end: the 65th and the 95th percentile, the two ages its
// polls aim at, estimated from the jobs seen finish and those last seen
// still running (see quantiles). Samples is how many finished; it is 0
// until the run knows anything.
type Typical struct {
	Samples  int
	P65, P95 time.Duration
	// Open65 and Open95 say a quantile is not known yet: too many of the
	// model's jobs are still running to say where it lies, only that it is
	// beyond P65 (or P95). The first jobs to finish are the short ones;
	// quantiles taken from them alone would pull every later poll early.
	Open65, Open95 bool
}

// minSamples is how many finished jobs a run must have seen before it
// trusts what they say about the next ones.
const minSamples = 4

// scouts is how many of a model's jobs are polled while nothing is known of
// its durations; the others wait for what the scouts learn.
const scouts = 8

// PollState is where one job stands between two polls.
type PollState struct {
	Polls    int           // polls made so far
	Age      time.Duration // since submission
	Since    time.Duration // since the last poll, or since submission
	QueuePos int           // last reported queue position (0: not queued or unknown)
	Scout    bool          // this job polls for its model while it is unknown
	Aimed    Aim           // the last target polled at
}

// Aim is the target a poll is aimed at.
type Aim int

const (
	AimNone    Aim = iota // not aimed: a scout's, a fallback's or a late poll
	AimTypical            // the model's typical end (P65)
	AimLate               // its late end (P95)
)

// PollPlan is when to poll a job next.
type PollPlan struct {
	Wait time.Duration
	// UntilNews says the wait is only a fallback: wake early, and ask
	// again, when a job of the model finishes.
	UntilNews bool
	Aim       Aim // what the poll is aimed at; the next PollState's Aimed
}

// PollInterval says when to poll a job next. It is a pure function so that
// its shape can be table-tested. typ is what the run knows of the job's
// model, limit the longest wait (--poll-max).
//
// Every poll is one call to the result endpoint, which also answers the
// status, so fewer polls is fewer calls. The shape:
//   - once the run knows a model's 65th percentile, a job's first poll is
//     aimed at it, the next at the 95th: for jobs of 2–4 s that is about
//     1.4 calls per job where a fixed 2 s status poller makes three (aimed
//     at the median and the 90th it was 1.6, with a little less lag). A
//     target is aimed at once: newer samples that move it after its poll do
//     not call for another;
//   - while the target is not known, a few scouts per model poll the old
//     way (the first at once: a model that answers at once costs no
//     waiting; then every second while young) and the model's other jobs
//     wait for what the scouts learn, polled at least every limit anyway so
//     that no job waits in silence on scouts that stall. A first wave of 64
//     jobs of 2–4 s costs 64 × 4 calls without scouts, 8 × 4 + 56 × 1.5
//     with them;
//   - past the 95th percentile, a tenth of the job's age, at least a second
//     (for a model whose jobs take a second or two, a quarter of its 95th
//     percentile, a quarter second at least): a job that has run for five
//     minutes will not end in the next second, and a half-second job is not
//     left finished for a second, a slot at RunComfy idle;
//   - a deep queue position stretches the wait (half a second per job ahead):
//     the queue drains at the service's pace, not at our polls';
//   - never longer than limit.
func PollInterval(p PollState, typ Typical, limit time.Duration) PollPlan {
	if limit <= 0 {
		limit = DefaultPollMax
	}
	age := max(p.Age, 0)
	lastAt := max(age-max(p.Since, 0), 0) // age at the last poll
	know65 := typ.Samples >= minSamples && !typ.Open65
	know95 := know65 && !typ.Open95
	// A target is still ahead unless it was aimed at or a poll came after it.
	ahead := func(a Aim, at time.Duration) bool { return p.Aimed < a && (p.Polls <= 0 || at > lastAt) }
	plan := PollPlan{}
	switch {
	case know65 && ahead(AimTypical, typ.P65):
		plan.Wait, plan.Aim = max(typ.P65-age, 0), AimTypical
	case know95 && ahead(AimLate, typ.P95):
		plan.Wait, plan.Aim = max(typ.P95-age, 0), AimLate
	case know95:
		plan.Wait = max(min(time.Second, max(typ.P95/4, 250*time.Millisecond)), age/10)
	case !p.Scout:
		return PollPlan{Wait: max(limit-max(p.Since, 0), 0), UntilNews: true}
	case p.Polls <= 0:
		plan.Wait = 0
	default:
		plan.Wait = max(time.Second, age/10)
	}
	if p.QueuePos > 0 && p.Polls > 0 {
		// The position comes from an earlier poll, so the first has none.
		plan.Wait = max(plan.Wait, time.Duration(min(p.QueuePos, 1<<20))*(time.Second/2))
	}
	plan.Wait = min(plan.Wait, limit)
	return plan
}

// quantiles estimates the 65th and 95th percentiles of a model's job
// durations from the jobs that finished (done) and those last seen still
// running at some age (alive), which are known only to take longer: the
// Kaplan–Meier estimate, which counts a running job among those that could
// have ended at each duration up to its age. Without it, the first jobs of a
// run to finish, the short ones, would be taken for typical. A quantile that
// the finished jobs do not reach yet is open, a lower bound. alive is
// reordered.
func quantiles(done, alive []time.Duration) Typical {
	typ := Typical{Samples: len(done), Open65: true, Open95: true}
	type obs struct {
		at    time.Duration
		ended bool
	}
	all := make([]obs, 0, len(done)+len(alive))
	for _, d := range done {
		all = append(all, obs{max(d, 0), true})
	}
	for _, a := range alive {
		all = append(all, obs{max(a, 0), false})
	}
	// Endings before runnings at the same age: a job seen running at t could
	// still end at t.
	slices.SortFunc(all, func(a, b obs) int {
		if c := cmp.Compare(a.at, b.at); c != 0 {
			return c
		}
		switch {
		case a.ended == b.ended:
			return 0
		case a.ended:
			return -1
		}
		return 1
	})
	const eps = 1e-9
	surviving, atRisk := 1.0, len(all)
	for i := 0; i < len(all); {
		at, ended, n := all[i].at, 0, 0
		for ; i < len(all) && all[i].at == at; i++ {
			n++
			if all[i].ended {
				ended++
			}
		}
		if ended > 0 {
			surviving *= 1 - float64(ended)/float64(atRisk)
			// Strictly past the quantile, as the sorted sample's s[n*65/100] is.
			if typ.Open65 && surviving < 0.35-eps {
				typ.P65, typ.Open65 = at, false
			}
			if typ.Open95 && surviving < 0.05-eps {
				typ.P95, typ.Open95 = at, false
			}
		}
		atRisk -= n
	}
	if len(all) > 0 {
		last := all[len(all)-1].at
		if typ.Open65 {
			typ.P65 = last
		}
		if typ.Open95 {
			typ.P95 = last
		}
	}
	return typ
}

// durations is what a run knows of one model's job durations, shared by
// every worker: the jobs that finished most recently (a window rather than
// all history, so that it follows a queue that grows or drains during the
// run), the jobs being polled and the age each was last seen running at,
// and which of them scout.
type durations struct {
	mu     sync.Mutex
	window [128]time.Duration
	n      int                      // samples recorded, all time
	alive  map[string]time.Duration // job id -> age it was last seen running
	scouts map[string]bool          // job ids scouting
	// news ends when a job finishes or a scout's place frees: jobs waiting
	// on the scouts ask again.
	news     context.Context
	announce context.CancelFunc
}

// add records how long a finished job took.
func (d *durations) add(took time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.window[d.n%len(d.window)] = max(took, 0)
	d.n++
	d.tell()
}

// tell wakes the jobs waiting on news. d.mu is held.
func (d *durations) tell() {
	if d.announce != nil {
		d.announce()
		d.news, d.announce = nil, nil
	}
}

// get says what is known now.
func (d *durations) get() Typical {
	d.mu.Lock()
	defer d.mu.Unlock()
	alive := make([]time.Duration, 0, len(d.alive))
	for _, a := range d.alive {
		alive = append(alive, a)
	}
	return quantiles(d.window[:min(d.n, len(d.window))], alive)
}

// seen records that a job was seen still running at age.
func (d *durations) seen(id string, age time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.alive == nil {
		d.alive = map[string]time.Duration{}
	}
	d.alive[id] = max(d.alive[id], age)
}

// scout says whether a job polls for its model while it is unknown: it is
// one of the first few to ask, or took the place of one that ended.
func (d *durations) scout(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.scouts[id] {
		return true
	}
	if len(d.scouts) >= scouts {
		return false
	}
	if d.scouts == nil {
		d.scouts = map[string]bool{}
	}
	d.scouts[id] = true
	return true
}

// gone forgets a job that is no longer polled, whatever its end.
func (d *durations) gone(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.alive, id)
	if d.scouts[id] {
		delete(d.scouts, id)
		// A scout that failed or was cancelled taught nothing, and no job
		// finishing may come to wake the others: one of them takes its
		// place now, not at --poll-max.
		d.tell()
	}
}

// newsOf ends when the next job finishes.
func (d *durations) newsOf() context.Context {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.news == nil {
		d.news, d.announce = context.WithCancel(context.Background())
	}
	return d.news
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
