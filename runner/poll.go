package runner

import "time"

// DefaultPollMax is the longest wait between two polls of one job.
const DefaultPollMax = 15 * time.Second

// PollInterval says how long to wait before polling a job again. It is a pure
// function so its shape can be table-tested:
//   - the first poll comes right after the submission: a model that answers
//     at once (or the simulated API) costs no waiting at all;
//   - then polls are frequent while the job is young and slow down as it
//     ages, because a job that has taken a minute will not finish in the next
//     second;
//   - a deep queue position stretches the wait: the hundredth job in line
//     needs no poll every second;
//   - never longer than max.
//
// polls is how many polls were made so far, age the time since submission,
// queuePos the last reported position (0 when not queued or unknown).
func PollInterval(polls int, age time.Duration, queuePos int, max time.Duration) time.Duration {
	if max <= 0 {
		max = DefaultPollMax
	}
	if polls <= 0 {
		return 0
	}
	// A tenth of the job's age, at least one second: a job done in 3 s is
	// seen within a second; one running for 5 minutes is polled every 15 s
	// (with the default cap).
	d := age / 10
	if d < time.Second {
		d = time.Second
	}
	if queuePos > 0 {
		// Half a second per job ahead in line, capped below: the queue drains
		// at the rate of the service, not of our polls.
		q := time.Duration(min(queuePos, 1<<20)) * (time.Second / 2)
		if q > d {
			d = q
		}
	}
	if d > max {
		d = max
	}
	return d
}
