package lifecycle

import (
	"reflect"
	"testing"
)

func TestOutputs(t *testing.T) {
	tests := []struct {
		name, source, output string
		want                 []string
	}{
		{"video", "PN execution.py output_video", `{"video":"https://s.runcomfy.net/x.mp4"}`, []string{"https://s.runcomfy.net/x.mp4"}},
		{"videos", "PN execution.py output_video (videos list)", `{"videos":["https://a/1.mp4","https://a/2.mp4"]}`, []string{"https://a/1.mp4", "https://a/2.mp4"}},
		{"image", "PN execution.py output_images (image)", `{"image":"https://a/1.png"}`, []string{"https://a/1.png"}},
		{"images", "PN tests/test_multi_model_api.py (images)", `{"images":["https://storage.runcomfy.net/image.png"]}`, []string{"https://storage.runcomfy.net/image.png"}},
		{"audio", "PN tests/test_audio_output.py (audio)", `{"audio":"https://a/1.mp3"}`, []string{"https://a/1.mp3"}},
		{"audios deduplicated", "PN tests/test_audio_output.py ({\"audios\":[\"one\",\"one\"]})", `{"audios":["https://a/1.mp3","https://a/1.mp3"]}`, []string{"https://a/1.mp3"}},
		{"nested, media keys first", "CLI src/download.rs urls_are_collected_once_in_order", `{"preview":"https://a/p.png","nested":{"video":"https://a/v.mp4","n":1},"images":["https://a/i.png"]}`,
			[]string{"https://a/i.png", "https://a/p.png", "https://a/v.mp4"}},
		{"dicts inside a list", "MCP runcomfy_client.py:814-862 (skips these; we do not)", `{"images":[{"url":"https://a/1.png"}]}`, []string{"https://a/1.png"}},
		{"data URL", "PN media.py (data: URIs in media fields)", `{"video":"data:video/mp4;base64,AAAA"}`, []string{"data:video/mp4;base64,AAAA"}},
		{"URLs win over text", "CLI src/download.rs (only http(s) downloaded)", `{"video":"https://a/v.mp4","prompt":"a cat"}`, []string{"https://a/v.mp4"}},
		{"text", "CLI src/cmd/mod.rs (prints output)", `{"text":"a caption","lang":"en"}`, []string{"a caption"}},
		{"bare string", "none: output schemas allow a single URI", `"https://a/v.mp4"`, []string{"https://a/v.mp4"}},
		{"empty", "PN execution.py (missing_output)", `{}`, nil},
		{"empty media, an echoed prompt", "PN execution.py (missing_output); found in review", `{"images":[],"prompt":"a cat"}`, nil},
		{"an empty URL beside its type", "PN execution.py (missing_output); found in review", `{"images":[{"url":"","content_type":"image/png"}]}`, nil},
		{"a URL with a space", "CLI src/download.rs (any http(s) string)", `{"video":"https://cdn/x/my video.mp4"}`, []string{"https://cdn/x/my video.mp4"}},
		{"caption", "none: a text key", `{"caption":"two cats","seed":"7"}`, []string{"two cats"}},
		{"null", "PN execution.py (missing_output)", `null`, nil},
		{"unknown shape: numbers only", "none: the safe default", `{"seed":7}`, nil},
		{"unknown shape: broken JSON keeps what was read", "none: the safe default", `{"video":"https://a/v.mp4", "x":`, []string{"https://a/v.mp4"}},
	}
	for _, tt := range tests {
		got := Outputs(raw(tt.output))
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s (%s): Outputs(%s) = %q, want %q", tt.name, tt.source, tt.output, got, tt.want)
		}
	}
	for s, k := range map[string]OutputKind{"https://a/b": OutputURL, "HTTP://a/b": OutputURL, "data:text/plain,hi": OutputData, "hello": OutputText, "ftp://a/b": OutputText} {
		if KindOf(s) != k {
			t.Errorf("KindOf(%q) = %d, want %d", s, KindOf(s), k)
		}
	}
}

func TestEstimate(t *testing.T) {
	tests := []struct {
		name, source string
		input        string
		p            Price
		usd          float64
		ok           bool
	}{
		{"per second", "PN pricing.py Price.estimate (second × duration)", `{"duration":5}`, Price{raw(`0.57`), "second"}, 2.85, true},
		{"numeric string price", "CLI src/cmd/models.rs (string price shown as -; we read it)", `{"duration":5}`, Price{raw(`"0.05"`), "second"}, 0.25, true},
		{"per output", "PN pricing.py (output → the rate)", `{}`, Price{raw(`0.036`), "output"}, 0.036, true},
		{"unit case", "PN catalog.py price_unit", `{}`, Price{raw(`0.1`), "Output"}, 0.1, true},
		{"float duration", "PN pricing.py (numeric duration)", `{"duration":5.5}`, Price{raw(`0.05`), "second"}, 0.275, true},
		{"zero duration", "PN pricing.py (numeric duration)", `{"duration":0}`, Price{raw(`0.05`), "second"}, 0, false},
		{"null duration", "PN pricing.py (numeric duration)", `{"duration":null}`, Price{raw(`0.05`), "second"}, 0, false},
		{"no duration", "PN tests/test_multi_model_api.py (auto duration → no estimate)", `{"duration":"auto"}`, Price{raw(`0.57`), "second"}, 0, false},
		{"minute is not RunComfy's", "PN scripts/update_model_catalog.py (only output, second)", `{"duration":5}`, Price{raw(`1`), "minute"}, 0, false},
		{"request is not RunComfy's", "PN scripts/update_model_catalog.py (only output, second)", `{}`, Price{raw(`1`), "request"}, 0, false},
		{"zero price is no basis", "PN tests/test_client.py (0 accepted as free; a cap must not trust it)", `{}`, Price{raw(`0`), "output"}, 0, false},
		{"negative", "PN tests/test_client.py test_missing_or_invalid_price_never_becomes_free (-1)", `{}`, Price{raw(`-1`), "output"}, 0, false},
		{"missing", "PN tests/test_client.py (None)", `{}`, Price{nil, "output"}, 0, false},
		{"bool", "PN tests/test_client.py (true)", `{}`, Price{raw(`true`), "output"}, 0, false},
		{"unknown shape: object", "none: the safe default", `{}`, Price{raw(`{"usd":1}`), "output"}, 0, false},
	}
	for _, tt := range tests {
		usd, ok, why := Estimate(raw(tt.input), tt.p)
		if ok != tt.ok || (ok && (usd-tt.usd > 1e-9 || tt.usd-usd > 1e-9)) || (!ok && why == "") {
			t.Errorf("%s (%s): Estimate = %v %v %q, want %v %v", tt.name, tt.source, usd, ok, why, tt.usd, tt.ok)
		}
	}
}

func TestCharge(t *testing.T) {
	tests := []struct {
		est       float64
		estimated bool
		highest   float64
		want      float64
		ok        bool
	}{
		{0.25, true, 0, 0.25, true},
		{0.25, true, 0.40, 0.40, true}, // RunComfy billed more than the price says
		{0.25, true, 0.10, 0.25, true},
		{0, false, 0.30, 0.30, true}, // no price, but a reported cost
		{0, true, 0, 0, false},       // a $0 estimate is no basis
		{0, false, 0, 0, false},
	}
	for _, tt := range tests {
		got, ok := Charge(tt.est, tt.estimated, tt.highest)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Charge(%v, %v, %v) = %v %v, want %v %v", tt.est, tt.estimated, tt.highest, got, ok, tt.want, tt.ok)
		}
	}
}

func TestCancel(t *testing.T) {
	tests := []struct {
		name, source string
		a            CancelAnswer
		outcome      string
		to           State
		record       bool
	}{
		{"full answer", "CLI src/cmd/cancel.rs (outcome cancelled)", CancelAnswer{Status: "cancelled", Outcome: "cancelled"}, OutcomeCancelled, Cancelled, true},
		{"status only", "PN tests/test_partner_nodes.py ({\"status\":\"cancelled\"})", CancelAnswer{Status: "cancelled"}, OutcomeCancelled, Cancelled, true},
		{"cancellation_requested with cancelled status", "PN tests/test_execution.py setUp", CancelAnswer{Status: "cancelled", Outcome: "cancellation_requested"}, OutcomeCancelled, Cancelled, true},
		{"canceled", "CLI src/cmd/mod.rs print_cancel_outcome (canceled)", CancelAnswer{Status: "canceled", Outcome: "canceled"}, OutcomeCancelled, Cancelled, true},
		{"CANCELLED", "CLI src/poll.rs (lower-cases)", CancelAnswer{Status: "CANCELLED"}, OutcomeCancelled, Cancelled, true},
		{"outcome only", "CLI src/cmd/mod.rs (Model API replies outcome cancelled)", CancelAnswer{Outcome: "cancelled"}, OutcomeCancelled, Cancelled, true},
		{"not cancellable", "PN tests/test_execution.py ({\"outcome\":\"not_cancellable\"})", CancelAnswer{Status: "in_progress", Outcome: "not_cancellable"}, OutcomeNotCancellable, Queued, true},
		{"asked, still queued", "PN execution.py (only cancelled confirms)", CancelAnswer{Status: "in_queue", Outcome: "cancelled"}, OutcomeRequested, Queued, true},
		{"requested alone", "CLI src/cmd/mod.rs (serverless cancellation_requested)", CancelAnswer{Outcome: "cancellation_requested"}, OutcomeRequested, Queued, true},
		{"empty object", "PN tests/test_client.py ({} cancel reply)", CancelAnswer{}, OutcomeRequested, Queued, true},
		{"404001", "docs error codes (404001)", CancelAnswer{Failure: &Answer{HTTPStatus: 404, Code: CodeNotFound}}, OutcomeNotFound, "", false},
		{"500", "PN execution.py (cancel error → could not be confirmed)", CancelAnswer{Failure: &Answer{HTTPStatus: 500}}, OutcomeError, "", false},
		{"unknown shape: odd status", "none: the safe default", CancelAnswer{Status: "zombie", Outcome: "maybe"}, OutcomeRequested, Queued, true},
	}
	for _, tt := range tests {
		d := Cancel(Queued, tt.a)
		if d.Outcome != tt.outcome || d.Record != tt.record || (d.Record && d.Step.To != tt.to) || d.Detail == "" {
			t.Errorf("%s (%s): Cancel = %+v, want outcome %s to %s record %v", tt.name, tt.source, d, tt.outcome, tt.to, tt.record)
		}
		if d.Record && !Allowed(Queued, d.Step.To) {
			t.Errorf("%s: %s → %s is not a transition", tt.name, Queued, d.Step.To)
		}
	}
}

func TestNext(t *testing.T) {
	none, retry, unknown, submitOnly := Flags{}, Flags{RetryFailed: true}, Flags{ResubmitUnknown: true}, Flags{SubmitOnly: true}
	tests := []struct {
		st   State
		ch   Change
		f    Flags
		want Action
	}{
		{"", New, none, ActionSubmit},
		{Pending, Unchanged, none, ActionSubmit},
		{Queued, Unchanged, none, ActionPoll},
		{Running, Unchanged, none, ActionPoll},
		{Running, Unchanged, submitOnly, ActionNone},
		{Completed, Unchanged, submitOnly, ActionDownload},
		{Done, Unchanged, none, ActionNone},
		{Failed, Unchanged, none, ActionNone},
		{Failed, Unchanged, retry, ActionSubmit},
		{Cancelled, Unchanged, retry, ActionSubmit},
		{Unknown, Unchanged, retry, ActionNone},
		{Unknown, Unchanged, unknown, ActionSubmit},
		{Submitting, Unchanged, none, ActionNone},      // a run makes it unknown first
		{Submitting, Unchanged, unknown, ActionSubmit}, // and --resubmit-unknown submits it
		{Submitting, Changed, none, ActionSubmit},      // unknown, then replaced by the new input
		{Done, Changed, none, ActionSubmit},
		{Running, Changed, none, ActionPoll}, // paid for: collected first
		{Completed, Changed, none, ActionDownload},
	}
	for _, tt := range tests {
		if got := Next(tt.st, tt.ch, tt.f); got != tt.want {
			t.Errorf("Next(%q, %s, %+v) = %s, want %s", tt.st, tt.ch, tt.f, got, tt.want)
		}
	}
	if got := SubmitFrom(Flags{RetryFailed: true, ResubmitUnknown: true}); !reflect.DeepEqual(got, []State{Pending, Failed, Cancelled, Unknown}) {
		t.Errorf("SubmitFrom = %v", got)
	}
	if got := CollectFrom(none); !reflect.DeepEqual(got, []State{Completed, Queued, Running}) {
		t.Errorf("CollectFrom = %v", got)
	}
	if got := CollectFrom(submitOnly); !reflect.DeepEqual(got, []State{Completed}) {
		t.Errorf("CollectFrom(submit-only) = %v", got)
	}
}

// The table is consistent with the decisions: every state a run submits
// from may move to submitting, every edge names real states and says what
// it means, and none is listed twice.
func TestEdges(t *testing.T) {
	seen := map[[2]State]bool{}
	for _, e := range Edges {
		if !e.From.Valid() || !e.To.Valid() || e.Means == "" {
			t.Errorf("bad edge %+v", e)
		}
		if seen[[2]State{e.From, e.To}] {
			t.Errorf("edge %s → %s listed twice", e.From, e.To)
		}
		seen[[2]State{e.From, e.To}] = true
	}
	for _, st := range SubmitFrom(Flags{RetryFailed: true, ResubmitUnknown: true}) {
		if !Allowed(st, Submitting) {
			t.Errorf("a run submits from %s, but %s → submitting is no edge", st, st)
		}
	}
	for _, st := range States {
		if st.Replaceable() && !Allowed(st, Pending) {
			t.Errorf("Sync may replace %s, but %s → pending is no edge", st, st)
		}
	}
	if !Allowed(Submitting, Recover().To) {
		t.Errorf("Recover's %s is no edge from submitting", Recover().To)
	}
	if Allowed(Completed, Failed) || Allowed(Done, Submitting) || Allowed(Queued, Pending) {
		t.Errorf("an edge that could pay twice or lose a paid result is allowed")
	}
}

func TestMayBeBilledAndRan(t *testing.T) {
	tests := []struct {
		outcome     State
		hasRequest  bool
		billed, ran bool
	}{
		{"", false, true, false},        // cut off mid-POST: may exist
		{"", true, true, false},         // in flight
		{Unknown, false, true, false},   // outcome unknown: may exist
		{Completed, true, true, true},   // RunComfy finished it
		{Failed, true, true, true},      // RunComfy ran and failed it
		{Failed, false, false, false},   // rejected before any request existed (4xx)
		{Pending, false, false, false},  // proved not created (not sent, 429, refused)
		{Cancelled, true, false, false}, // cancelled in the queue
		{Done, true, true, true},        // a job's state: done is a result
	}
	for _, tt := range tests {
		if got := MayBeBilled(tt.outcome, tt.hasRequest); got != tt.billed {
			t.Errorf("MayBeBilled(%q, %v) = %v", tt.outcome, tt.hasRequest, got)
		}
		if got := Ran(tt.outcome, tt.hasRequest); got != tt.ran {
			t.Errorf("Ran(%q, %v) = %v", tt.outcome, tt.hasRequest, got)
		}
	}
}
