package lifecycle

import (
	"encoding/json"
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	late := MissingGrace + time.Minute
	pos := 4
	tests := []struct {
		name, source string
		cur          State
		w            Watch
		a            PollAnswer
		age          time.Duration
		verdict      PollVerdict
		to           State // "" when no step
	}{
		{"in_queue", "PN tests/test_execution.py ({\"status\":\"in_queue\"})", Running, Watch{}, PollAnswer{Status: "in_queue", QueuePosition: &pos}, 0, KeepPolling, Queued},
		{"in_progress", "PN tests/test_execution.py ({\"status\":\"in_progress\"})", Queued, Watch{}, PollAnswer{Status: "in_progress"}, 0, KeepPolling, Running},
		{"pending", "PN execution.py (pending keeps polling)", Running, Watch{}, PollAnswer{Status: "pending"}, 0, KeepPolling, Queued},
		{"waiting", "PN execution.py (waiting keeps polling)", Queued, Watch{}, PollAnswer{Status: "waiting"}, 0, KeepPolling, Queued},
		{"starting", "PN execution.py (starting keeps polling)", Queued, Watch{}, PollAnswer{Status: "starting"}, 0, KeepPolling, Queued},
		{"processing", "PN execution.py (processing keeps polling)", Queued, Watch{}, PollAnswer{Status: "processing"}, 0, KeepPolling, Running},
		{"completed with a video", "PN tests/test_execution.py setUp", Running, Watch{}, PollAnswer{Status: "completed", Output: raw(`{"video":"https://storage.runcomfy.net/x.mp4"}`), Cost: raw(`3.15`)}, 0, Settle, Completed},
		{"COMPLETED upper case", "CLI src/poll.rs status_of (lower-cases)", Running, Watch{}, PollAnswer{Status: "COMPLETED", Output: raw(`{"video":"https://a/x.mp4"}`)}, 0, Settle, Completed},
		{"Completed title case", "MCP runcomfy_client.py:423-456 (lower-cases)", Running, Watch{}, PollAnswer{Status: "Completed", Output: raw(`{"video":"https://a/x.mp4"}`)}, 0, Settle, Completed},
		{"succeeded", "CLI src/poll.rs inference_is_terminal", Running, Watch{}, PollAnswer{Status: "succeeded", Output: raw(`{"images":["https://a/1.png"]}`)}, 0, Settle, Completed},
		{"completed with text only", "CLI src/cmd/mod.rs (text outputs printed)", Running, Watch{}, PollAnswer{Status: "completed", Output: raw(`{"text":"a caption"}`)}, 0, Settle, Completed},
		{"completed with nothing", "PN execution.py output_video (missing_output)", Running, Watch{}, PollAnswer{Status: "completed", Output: raw(`{}`), Error: "no output"}, 0, Settle, Failed},
		{"failed", "PN tests/test_execution.py ({\"status\":\"failed\",\"error\":\"provider-secret\"})", Running, Watch{}, PollAnswer{Status: "failed", Error: "provider-secret"}, 0, Settle, Failed},
		{"FAILED", "CLI src/poll.rs (lower-cases)", Queued, Watch{}, PollAnswer{Status: "FAILED"}, 0, Settle, Failed},
		{"cancelled", "CLI src/poll.rs inference_is_terminal", Queued, Watch{}, PollAnswer{Status: "cancelled"}, 0, Settle, Cancelled},
		{"canceled", "CLI src/poll.rs inference_is_terminal (canceled)", Queued, Watch{}, PollAnswer{Status: "canceled"}, 0, Settle, Cancelled},
		{"unknown status, first time", "CLI src/poll.rs wait_terminal (unknown keeps polling)", Running, Watch{}, PollAnswer{Status: "warming_up"}, 0, KeepPolling, Running},
		{"unknown status, bounded", "PN execution.py (unknown_state stops, keeps the request id)", Queued, Watch{Strange: StrangeTries - 1}, PollAnswer{Status: "warming_up"}, 0, Park, Queued},
		{"missing status", "CLI src/poll.rs status_of (missing → \"\")", Running, Watch{}, PollAnswer{}, 0, KeepPolling, Running},
		{"transient 503", "CLI src/exit.rs (5xx → 69)", Running, Watch{}, PollAnswer{Failure: &Answer{HTTPStatus: 503}, Transient: true}, 0, KeepPolling, ""},
		{"401 stops the account", "CLI src/api.rs api_error (401 → TokenRejected)", Running, Watch{}, PollAnswer{Failure: &Answer{HTTPStatus: 401}}, 0, StopAccount, ""},
		{"403 counted, not failed", "CLI src/api.rs api_error (403 → forbidden)", Running, Watch{}, PollAnswer{Failure: &Answer{HTTPStatus: 403}}, late, KeepPolling, ""},
		{"403 parked after tries", "CLI src/api.rs api_error (403 → forbidden)", Running, Watch{Errors: ErrorTries - 1}, PollAnswer{Failure: &Answer{HTTPStatus: 403}}, late, Park, ""},
		{"2xx with error_code parked", "MCP runcomfy_client.py:149-158", Queued, Watch{Errors: ErrorTries - 1}, PollAnswer{Failure: &Answer{HTTPStatus: 200, Code: 500001}}, late, Park, ""},
		{"bare 404 parked, never failed", "PN execution.py (404 stops the poll, keeps the id)", Queued, Watch{Errors: ErrorTries - 1, Missing: 0}, PollAnswer{Failure: &Answer{HTTPStatus: 404}}, late, Park, ""},
		{"404001 right after submit", "docs error codes (404001); none of the clients special-case it", Queued, Watch{Errors: 5, Missing: 5}, PollAnswer{Failure: &Answer{HTTPStatus: 404, Code: CodeNotFound}}, time.Second, KeepPolling, ""},
		{"404001 long past submit, every time", "docs error codes (404001 expired)", Queued, Watch{Errors: ErrorTries - 1, Missing: ErrorTries - 1}, PollAnswer{Failure: &Answer{HTTPStatus: 404, Code: CodeNotFound}}, late, Settle, Failed},
		{"unknown shape: malformed 2xx", "none: the safe default", Running, Watch{}, PollAnswer{Failure: &Answer{HTTPStatus: 200, Malformed: true}}, late, KeepPolling, ""},
		{"unknown shape: 418", "none: the safe default", Running, Watch{Errors: ErrorTries - 1}, PollAnswer{Failure: &Answer{HTTPStatus: 418}}, late, Park, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := Poll(tt.cur, tt.w, tt.a, tt.age)
			to := State("")
			if d.Step != nil {
				to = d.Step.To
			}
			if d.Verdict != tt.verdict || to != tt.to {
				t.Fatalf("Poll = verdict %d step %q, want %d %q (%s)", d.Verdict, to, tt.verdict, tt.to, tt.source)
			}
			if d.Step != nil && !Allowed(tt.cur, d.Step.To) {
				t.Fatalf("%s → %s is not a transition", tt.cur, d.Step.To)
			}
			if d.Step != nil && d.Step.Remote != tt.a.Status {
				t.Fatalf("remote status not kept verbatim: %q", d.Step.Remote)
			}
			if d.Verdict == Park && d.Why == "" {
				t.Fatalf("parked in silence")
			}
		})
	}
}

// A status nobody knows is polled with growing waits and parked after
// StrangeTries polls: never forever, never in silence.
func TestPollStrangeStatusIsBounded(t *testing.T) {
	var w Watch
	var d PollDecision
	last := -1
	for i := 1; i <= StrangeTries; i++ {
		d, w = Poll(Running, w, PollAnswer{Status: "Mystery"}, time.Minute)
		if i < StrangeTries {
			if d.Verdict != KeepPolling || d.Backoff <= last {
				t.Fatalf("poll %d: verdict %d backoff %d after %d", i, d.Verdict, d.Backoff, last)
			}
			last = d.Backoff
		}
	}
	if d.Verdict != Park || d.Why == "" {
		t.Fatalf("after %d strange polls: verdict %d, why %q", StrangeTries, d.Verdict, d.Why)
	}
	// A known status in between starts the count over.
	_, w = Poll(Running, Watch{Strange: 10}, PollAnswer{Status: "in_progress"}, 0)
	if w.Strange != 0 {
		t.Fatalf("a known status did not reset the count: %+v", w)
	}
}

func TestPollCost(t *testing.T) {
	for _, tt := range []struct {
		cost string
		want *float64
		warn bool
	}{
		{`0.25`, ptr(0.25), false},
		{`"0.25"`, ptr(0.25), false},
		{``, nil, false},
		{`null`, nil, false},
		{`-1`, nil, true},
		{`"about a quarter"`, nil, true},
		{`true`, nil, true},
	} {
		d, _ := Poll(Running, Watch{}, PollAnswer{Status: "completed", Output: raw(`{"video":"https://a/b.mp4"}`), Cost: raw(tt.cost)}, 0)
		got := d.Step.Cost
		if (got == nil) != (tt.want == nil) || (got != nil && *got != *tt.want) || (d.Warn != "") != tt.warn {
			t.Errorf("cost %s: got %v warn %q, want %v warn %v", tt.cost, got, d.Warn, tt.want, tt.warn)
		}
	}
}

func raw(s string) json.RawMessage { return json.RawMessage(s) }

func ptr(f float64) *float64 { return &f }

// Polls that fail as an outage does are waited out, but not forever: past
// TransientLimit the job is parked in flight, with a message. (Found in
// review: 500 straight 503s left the run polling.)
func TestPollTransientIsBounded(t *testing.T) {
	var w Watch
	var d PollDecision
	for i := 0; i < 1000; i++ {
		age := time.Duration(i) * 10 * time.Second
		d, w = Poll(Running, w, PollAnswer{Failure: &Answer{HTTPStatus: 503}, Transient: true}, age)
		if age < TransientLimit && d.Verdict != KeepPolling {
			t.Fatalf("parked after %v of an outage", age)
		}
		if d.Verdict == Park {
			break
		}
	}
	if d.Verdict != Park || d.Why == "" || d.Step != nil {
		t.Fatalf("after a long outage: %+v", d)
	}
	// An answer in between starts the clock over.
	_, w = Poll(Running, Watch{Transient: 5, TransientFrom: 0}, PollAnswer{Status: "in_progress"}, 2*TransientLimit)
	if w.Transient != 0 {
		t.Fatalf("a real answer did not reset the count: %+v", w)
	}
}
