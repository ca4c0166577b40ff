package runner

import (
	"math"
	"testing"
	"time"
)

func TestPollInterval(t *testing.T) {
	const s = time.Second
	cases := []struct {
		name     string
		polls    int
		age      time.Duration
		queuePos int
		max      time.Duration
		want     time.Duration
	}{
		{"first poll is immediate", 0, 0, 0, 15 * s, 0},
		{"young job: one second", 1, 2 * s, 0, 15 * s, s},
		{"a tenth of the age", 5, 40 * s, 0, 15 * s, 4 * s},
		{"capped by max", 9, 10 * time.Minute, 0, 15 * s, 15 * s},
		{"custom max", 9, 10 * time.Minute, 0, 3 * s, 3 * s},
		{"zero max means default", 9, 10 * time.Minute, 0, 0, DefaultPollMax},
		{"deep queue stretches", 2, 3 * s, 20, 15 * s, 10 * s},
		{"deep queue capped", 2, 3 * s, 1000, 15 * s, 15 * s},
		{"huge queue position does not overflow", 2, 3 * s, math.MaxInt, 15 * s, 15 * s},
		{"huge age does not overflow", 2, time.Duration(math.MaxInt64), 0, 15 * s, 15 * s},
		{"shallow queue keeps age rule", 3, 30 * s, 2, 15 * s, 3 * s},
	}
	for _, c := range cases {
		if got := PollInterval(c.polls, c.age, c.queuePos, c.max); got != c.want {
			t.Errorf("%s: PollInterval(%d, %v, %d, %v) = %v, want %v", c.name, c.polls, c.age, c.queuePos, c.max, got, c.want)
		}
	}
}
