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
// submission to the end: the 65th and the 95th percentile, estimated from
// the jobs seen finish and those last seen still running (see quantiles),
// and, once both are known, the ages its polls aim at (see planLevels).
// Samples is how many finished; it is 0 until the run knows anything.
type Typical struct {
	Samples  int
	P65, P95 time.Duration
	// Open65 and Open95 say a quantile is not known yet: too many of the
	// model's jobs are still running to say where it lies, only that it is
	// beyond P65 (or P95). The first jobs to finish are the short ones;
	// quantiles taken from them alone would pull every later poll early.
	Open65, Open95 bool
	// Aims are the ages a job's polls aim at, in order, the last at P95;
	// nil means P65 then P95.
	Aims []time.Duration
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

// Aim is the target a poll is aimed at: n for the n-th of the model's aims
// (Typical.Aims, or P65 then P95), AimNone for a scout's, a fallback's or a
// late poll.
type Aim int

const (
	AimNone    Aim = 0
	AimTypical Aim = 1 // the first aim: P65 unless planned otherwise
	AimLate    Aim = 2 // the second: P95 unless planned otherwise
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
//     aimed at it, and once it knows the 95th, at the aims planLevels
//     gives: the fewest polls that leave a finished job unseen for at most
//     a fifth of the model's mean duration (for jobs of 2–4 s the 70th then
//     the 95th, about 1.4 calls per job; for jobs of 0.2–0.8 s, whose
//     spread is wider for their length, four aims). A target is aimed at once: newer
//     samples that move it after its poll do not call for another;
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
	var targets []time.Duration
	switch {
	case know95 && typ.Aims != nil:
		targets = typ.Aims
	case know95:
		targets = []time.Duration{typ.P65, typ.P95}
	case know65:
		targets = []time.Duration{typ.P65}
	}
	plan := PollPlan{}
	// A target is still ahead unless it was aimed at or a poll came after it.
	for i := max(int(p.Aimed), 0); i < len(targets); i++ {
		if p.Polls <= 0 || targets[i] > lastAt {
			plan.Wait, plan.Aim = max(targets[i]-age, 0), Aim(i+1)
			return plan.bounded(p, limit)
		}
	}
	switch {
	case know95:
		plan.Wait = lateStep(typ.P95, age)
	case !p.Scout:
		return PollPlan{Wait: max(limit-max(p.Since, 0), 0), UntilNews: true}
	case p.Polls <= 0:
		plan.Wait = 0
	default:
		plan.Wait = max(time.Second, age/10)
	}
	return plan.bounded(p, limit)
}

// bounded stretches a plan's wait for a deep queue (the position comes from
// an earlier poll, so the first has none) and caps it at limit.
func (plan PollPlan) bounded(p PollState, limit time.Duration) PollPlan {
	if p.QueuePos > 0 && p.Polls > 0 {
		plan.Wait = max(plan.Wait, time.Duration(min(p.QueuePos, 1<<20))*(time.Second/2))
	}
	plan.Wait = min(plan.Wait, limit)
	return plan
}

// lateStep is the wait between polls of a job past its model's 95th
// percentile: a tenth of its age, at least a second, or for a model whose
// jobs take a second or two a quarter of its 95th percentile, a quarter
// second at least.
func lateStep(p95, age time.Duration) time.Duration {
	return max(min(time.Second, max(p95/4, 250*time.Millisecond)), age/10)
}

// ending is one step of the Kaplan–Meier estimate of a model's durations:
// the share of its jobs that end at an age, and the share left running past
// it.
type ending struct {
	at          time.Duration
	share, left float64
}

// survival estimates how a model's job durations spread from the jobs that
// finished (done) and those last seen still running at some age (alive),
// which are known only to take longer: the Kaplan–Meier estimate, which
// counts a running job among those that could have ended at each duration
// up to its age. Without it, the first jobs of a run to finish, the short
// ones, would be taken for typical. It returns the endings in order of age
// (their shares sum to less than 1 while jobs run longer than any ended)
// and the largest age it was given.
func survival(done, alive []time.Duration) (ends []ending, last time.Duration) {
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
			before := surviving
			surviving *= 1 - float64(ended)/float64(atRisk)
			ends = append(ends, ending{at: at, share: before - surviving, left: surviving})
		}
		atRisk -= n
	}
	if len(all) > 0 {
		last = all[len(all)-1].at
	}
	return ends, last
}

// quantile is the age by which more than share q of the jobs end, if the
// endings reach it: strictly past it, as the sorted sample's s[n*q] is.
func quantile(ends []ending, q float64) (time.Duration, bool) {
	const eps = 1e-9
	for _, e := range ends {
		if e.left < 1-q-eps {
			return e.at, true
		}
	}
	return 0, false
}

// quantiles estimates the 65th and 95th percentiles of a model's job
// durations (see survival). A quantile that the finished jobs do not reach
// yet is open: a lower bound, the largest age seen.
func quantiles(done, alive []time.Duration) Typical {
	ends, last := survival(done, alive)
	return typicalOf(len(done), ends, last)
}

func typicalOf(samples int, ends []ending, last time.Duration) Typical {
	typ := Typical{Samples: samples, P65: last, P95: last, Open65: true, Open95: true}
	if at, ok := quantile(ends, 0.65); ok {
		typ.P65, typ.Open65 = at, false
	}
	if at, ok := quantile(ends, 0.95); ok {
		typ.P95, typ.Open95 = at, false
	}
	return typ
}

// idleShare is how long a finished job may wait, on average, for the poll
// that sees it end, as a share of its model's mean duration: its place at
// RunComfy stands idle meanwhile, so this bounds the share of the account
// a run leaves unused. A fifth keeps jobs of 2–4 s at two polls (idle 0.19)
// and gives jobs of 0.2–0.8 s, whose spread is wide for their length, four.
const idleShare = 0.2

// planLevels chooses the percentiles a model's polls aim at: the 95th, and
// before it up to three of the 20th, 25th, … 90th, with the fewest polls
// per job expected from ends whose expected idle is within idleShare of the
// mean duration (the least idle when none is). ends must reach the 95th.
func planLevels(ends []ending) []float64 {
	p95, _ := quantile(ends, 0.95)
	// What every plan shares: the jobs ending past the 95th, polled at the
	// late pace after it, and the mean.
	var total, mean, tail, tailPolls, tailIdle float64
	for _, e := range ends {
		total += e.share
		mean += e.share * e.at.Seconds()
		if e.at <= p95 {
			continue
		}
		tail += e.share
		t, n := p95, 0
		for t < e.at {
			next := t + lateStep(p95, t)
			if next < t {
				next = e.at // past the largest duration there is
			}
			t, n = next, n+1
		}
		tailPolls += e.share * float64(n)
		tailIdle += e.share * (t - e.at).Seconds()
	}
	if total <= 0 {
		return []float64{0.95}
	}
	mean /= total
	var levels []float64
	for l := 20; l <= 90; l += 5 {
		levels = append(levels, float64(l)/100)
	}
	type plan struct {
		levels      []float64
		polls, idle float64
	}
	better := func(a, b plan) bool {
		okA, okB := a.idle <= idleShare*mean, b.idle <= idleShare*mean
		switch {
		case okA != okB:
			return okA
		case !okA:
			return a.idle < b.idle || a.idle == b.idle && a.polls < b.polls
		}
		return a.polls < b.polls || a.polls == b.polls && a.idle < b.idle
	}
	var best plan
	found := false
	consider := func(chosen []float64) {
		lv := append(slices.Clone(chosen), 0.95)
		aims := aimsAt(ends, lv)
		p := plan{levels: lv}
		k := 0 // the aim that sees the endings from here on
		for _, e := range ends {
			if e.at > p95 {
				break
			}
			for aims[k] < e.at {
				k++
			}
			p.polls += e.share * float64(k+1)
			p.idle += e.share * (aims[k] - e.at).Seconds()
		}
		p.polls = (p.polls + tailPolls + float64(len(aims))*tail) / total
		p.idle = (p.idle + tailIdle) / total
		if !found || better(p, best) {
			best, found = p, true
		}
	}
	consider(nil)
	for i := range levels {
		consider(levels[i : i+1])
		for j := i + 1; j < len(levels); j++ {
			consider([]float64{levels[i], levels[j]})
			for k := j + 1; k < len(levels); k++ {
				consider([]float64{levels[i], levels[j], levels[k]})
			}
		}
	}
	return best.levels
}

// aimsAt is the ages of the given percentiles, in order, without repeats;
// ends must reach each of them.
func aimsAt(ends []ending, levels []float64) []time.Duration {
	aims := make([]time.Duration, 0, len(levels))
	for _, l := range levels {
		at, _ := quantile(ends, l)
		if len(aims) == 0 || at > aims[len(aims)-1] {
			aims = append(aims, at)
		}
	}
	return aims
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
	// levels are the percentiles polls aim at, planned when n was planned;
	// planned anew every replanEvery samples, as the search is not free.
	levels  []float64
	planned int
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

// replanEvery is how many jobs must finish before the aims are planned
// anew: their percentiles follow every sample, their choice need not.
const replanEvery = 16

// get says what is known now.
func (d *durations) get() Typical {
	d.mu.Lock()
	defer d.mu.Unlock()
	alive := make([]time.Duration, 0, len(d.alive))
	for _, a := range d.alive {
		alive = append(alive, a)
	}
	done := d.window[:min(d.n, len(d.window))]
	ends, last := survival(done, alive)
	typ := typicalOf(len(done), ends, last)
	if typ.Samples >= minSamples && !typ.Open65 && !typ.Open95 {
		if d.levels == nil || d.n-d.planned >= replanEvery {
			d.levels, d.planned = planLevels(ends), d.n
		}
		typ.Aims = aimsAt(ends, d.levels)
	}
	return typ
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
