package runcomfytest

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"comfybatch/runcomfy"
)

// Answers picks the shape of the server's answers among those RunComfy's
// own clients have to cope with, so that end-to-end tests can feed
// comfybatch hostile but plausible answers. The zero value answers as the
// documented API does. Unknown string values act as their zero value (see
// Validate).
//
// Shapes are read when each answer is written, so Update changes them for
// jobs already created, except NumericRequestIDs and OutputKind, which a
// job keeps from its creation (its id and its files cannot change).
type Answers struct {
	// Submit (POST /v1/models/{model}). The three shares below are taken
	// from one draw per created job, so they add up (keep the sum ≤ 1).
	// In each case the job is created, counted (Stats.Created,
	// SubmissionsByInput, Duplicates) and runs, but the client cannot learn
	// its id; Stats.CreatedUnanswered counts them.

	// SubmitCreated5xx is the share answered HTTP 503
	// {"error_message":"Service Unavailable"}: a gateway giving up after the
	// API created the job.
	SubmitCreated5xx float64
	// SubmitCreatedErrorCode is the share answered HTTP 200
	// {"error_code":500001,"error_message":"internal error"}.
	SubmitCreatedErrorCode float64
	// SubmitEmptyBody is the share answered HTTP 200 with {}, or [] on every
	// second such answer.
	SubmitEmptyBody float64
	// NumericRequestIDs makes request ids decimal digit strings ("1000017")
	// that the submit answer carries as a JSON number (1000017). Status,
	// result, cancel and file paths take the digits; the other answers
	// still write the id as a string.
	NumericRequestIDs bool
	// SubmitRefuse, when non-zero, is the HTTP status of every submit that
	// passes the token check, answered without creating a job: 401
	// unauthorized, 402 insufficient balance, 403 forbidden, 422 a
	// validation "detail" list, others their status text. Stats.Refused
	// counts them.
	SubmitRefuse int
	// EchoToken puts the request's Authorization header in the message of
	// every error body the server writes, any endpoint ("… from Bearer
	// <token>"), to prove that clients scrub it. Requests without the
	// header get the plain message.
	EchoToken bool

	// Polls (GET /v1/requests/{id}/status and /result). The renamings
	// apply wherever a status is written, cancel answers included; Jobs()
	// always reports the canonical lower-case status.

	// StatusCase is "upper" (IN_QUEUE, COMPLETED), "title" (In_queue,
	// Completed) or "" (as is).
	StatusCase string
	// Succeeded reports a successful end as "succeeded", not "completed".
	Succeeded bool
	// Canceled reports a cancelled job as "canceled".
	Canceled bool
	// UnknownStatus, if set, is reported instead of "in_progress" for the
	// whole run time (e.g. "warming_up").
	UnknownStatus string
	// NotFoundFor answers status and result calls HTTP 404
	// {"error_code":404001,"error_message":"request not found"} until this
	// long after the job's creation (by Config.Now): an API whose read side
	// lags its write side. Stats.NotFound counts them.
	NotFoundFor time.Duration
	// ResultQueuePosition adds "queue_position" to result answers for a
	// queued job, as status answers always have.
	ResultQueuePosition bool

	// OutputKind shapes a successful result's output:
	//   "", "video"  {"video": URL}, or "videos": [...] with OutputsPerJob > 1
	//   "videos"     {"videos": [...]} always
	//   "image", "images", "audio", "audios": the same with that key; the
	//                files are PNG (image/png) or MP3 (audio/mpeg)
	//   "nested"     {"data": {"files": [{"url": URL}, ...]}, "seed": 7}
	//   "data"       like "video" with data:video/mp4;base64 URIs, no file
	//                request needed
	//   "text"       {"text": OutputText(id)}, a single output, no URL at all
	// ExpectedOutput gives the bytes behind each output.
	OutputKind string

	// CostAs writes the result's cost (with include_cost=true) as "" or
	// "number" (0.25), "string" ("0.25"), "missing" (no field), "negative"
	// (-1) or "garbage" ("about a quarter").
	CostAs string
	// PriceAs writes GET /v1/models/{id}'s base_price_usd as "" or
	// "number" (0.05), "string" ("0.05"), "zero" (0) or "missing" (no
	// field). price_unit stays Config.PriceUnit.
	PriceAs string

	// CancelShape shapes POST /v1/requests/{id}/cancel answers. A queued
	// job is cancelled whatever the shape; others keep running.
	//   ""             {"request_id", "status", "outcome"}: "cancelled" or
	//                  "not_cancellable"
	//   "status-only"  {"status"} only
	//   "requested"    {"status", "outcome": "cancellation_requested"}, for
	//                  running and finished jobs too
	//   "empty"        {}
	//   "canceled"     as "" with "canceled" for status and outcome when
	//                  the job was cancelled
	CancelShape string
}

// Validate reports a share outside [0, 1], a SubmitRefuse that is not an
// HTTP error status, or a string knob with an unknown value.
func (a Answers) Validate() error {
	for name, p := range map[string]float64{
		"SubmitCreated5xx": a.SubmitCreated5xx, "SubmitCreatedErrorCode": a.SubmitCreatedErrorCode,
		"SubmitEmptyBody": a.SubmitEmptyBody,
	} {
		if p < 0 || p > 1 {
			return fmt.Errorf("%s %v: want a share between 0 and 1", name, p)
		}
	}
	if sum := a.SubmitCreated5xx + a.SubmitCreatedErrorCode + a.SubmitEmptyBody; sum > 1 {
		return fmt.Errorf("submit shares add up to %v: want at most 1", sum)
	}
	if a.SubmitRefuse != 0 && (a.SubmitRefuse < 400 || a.SubmitRefuse > 599) {
		return fmt.Errorf("SubmitRefuse %d: want an HTTP error status", a.SubmitRefuse)
	}
	for _, k := range []struct{ name, value, allowed string }{
		{"StatusCase", a.StatusCase, "upper title"},
		{"OutputKind", a.OutputKind, "video videos image images audio audios nested data text"},
		{"CostAs", a.CostAs, "number string missing negative garbage"},
		{"PriceAs", a.PriceAs, "number string zero missing"},
		{"CancelShape", a.CancelShape, "status-only requested empty canceled"},
	} {
		if k.value != "" && !strings.Contains(" "+k.allowed+" ", " "+k.value+" ") {
			return fmt.Errorf("%s %q: want one of %s", k.name, k.value, k.allowed)
		}
	}
	return nil
}

// submitAnswer is how a submit whose job was created is answered.
type submitAnswer int

const (
	submitOK submitAnswer = iota
	submit503
	submitErrorCode
	submitEmpty
)

// pickSubmitAnswer maps one uniform draw u in [0, 1) to an answer, so that
// each share is exact whatever the others are.
func (a Answers) pickSubmitAnswer(u float64) submitAnswer {
	switch {
	case u < a.SubmitCreated5xx:
		return submit503
	case u < a.SubmitCreated5xx+a.SubmitCreatedErrorCode:
		return submitErrorCode
	case u < a.SubmitCreated5xx+a.SubmitCreatedErrorCode+a.SubmitEmptyBody:
		return submitEmpty
	}
	return submitOK
}

// submitFaulty reports whether any created-then-failed share is set, so
// that the RNG is not drawn (and seeded runs do not change) when none is.
func (a Answers) submitFaulty() bool {
	return a.SubmitCreated5xx > 0 || a.SubmitCreatedErrorCode > 0 || a.SubmitEmptyBody > 0
}

// submitBody is the answer to a successful submit. RequestID is a string,
// or a json.Number under NumericRequestIDs.
type submitBody struct {
	RequestID any    `json:"request_id"`
	StatusURL string `json:"status_url,omitempty"`
	ResultURL string `json:"result_url,omitempty"`
	CancelURL string `json:"cancel_url,omitempty"`
}

// statusBody is the answer to a status call.
type statusBody struct {
	RequestID     string `json:"request_id,omitempty"`
	Status        string `json:"status"`
	QueuePosition *int   `json:"queue_position,omitempty"`
}

// cancelBody is the answer to a cancel call; every shape is a subset.
type cancelBody struct {
	RequestID string `json:"request_id,omitempty"`
	Status    string `json:"status,omitempty"`
	Outcome   string `json:"outcome,omitempty"`
}

// modelBody is the answer to a model call. BasePriceUSD is whatever
// PriceAs writes; nil leaves it out.
type modelBody struct {
	ModelID      string `json:"model_id,omitempty"`
	DisplayName  string `json:"display_name,omitempty"`
	BasePriceUSD any    `json:"base_price_usd,omitempty"`
	PriceUnit    string `json:"price_unit,omitempty"`
}

// validationError is one entry of a 422 "detail" list, in the shape
// FastAPI writes.
type validationError struct {
	Loc  []string `json:"loc"`
	Msg  string   `json:"msg"`
	Type string   `json:"type"`
}

// refusalMessage is the error_message of a submit refused with status.
func refusalMessage(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusPaymentRequired:
		return "insufficient balance"
	case http.StatusForbidden:
		return "forbidden"
	}
	return http.StatusText(status)
}

// validationDetail is the body of a submit refused with 422; echo adds the
// token to each message when EchoToken asks for it.
func validationDetail(echo func(string) string) map[string]any {
	return map[string]any{"detail": []validationError{
		{Loc: []string{"body", "prompt"}, Msg: echo("field required"), Type: "value_error.missing"},
		{Loc: []string{"body", "seed"}, Msg: echo("ensure this value is less than 2147483648"), Type: "value_error.number.not_le"},
	}}
}

// echoAuth appends the request's Authorization header to msg, as a careless
// server that logs requests into its errors would.
func echoAuth(msg string, r *http.Request) string {
	if auth := r.Header.Get("Authorization"); auth != "" {
		return msg + " from " + auth
	}
	return msg
}

// wireStatus is how the canonical status st is written.
func (a Answers) wireStatus(st string) string {
	switch {
	case st == runcomfy.StatusCompleted && a.Succeeded:
		st = runcomfy.StatusSucceeded
	case st == runcomfy.StatusCancelled && a.Canceled:
		st = runcomfy.StatusCanceled
	case st == runcomfy.StatusInProgress && a.UnknownStatus != "":
		st = a.UnknownStatus
	}
	switch a.StatusCase {
	case "upper":
		return strings.ToUpper(st)
	case "title":
		return titleCase(st)
	}
	return st
}

// titleCase upper-cases the first letter and lower-cases the rest:
// "in_queue" → "In_queue". Statuses are ASCII.
func titleCase(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + strings.ToLower(s[1:])
}

// costField is the result's "cost" value for cost; ok is false when the
// field is left out.
func (a Answers) costField(cost float64) (v any, ok bool) {
	switch a.CostAs {
	case "string":
		return strconv.FormatFloat(cost, 'f', -1, 64), true
	case "missing":
		return nil, false
	case "negative":
		return -1, true
	case "garbage":
		return "about a quarter", true
	}
	return cost, true
}

// priceField is the model's "base_price_usd" value; nil leaves it out.
func (a Answers) priceField(price float64) any {
	switch a.PriceAs {
	case "string":
		return strconv.FormatFloat(price, 'f', -1, 64)
	case "zero":
		return 0
	case "missing":
		return nil
	}
	return price
}

// cancelAnswer is the body of a cancel call on job id, whose canonical
// status after the call is st; cancelled tells whether this call
// cancelled it.
func (a Answers) cancelAnswer(id, st string, cancelled bool) cancelBody {
	outcome := "not_cancellable" // running and finished jobs cannot be cancelled
	if cancelled {
		outcome = "cancelled"
	}
	switch a.CancelShape {
	case "status-only":
		return cancelBody{Status: a.wireStatus(st)}
	case "requested":
		return cancelBody{Status: a.wireStatus(st), Outcome: "cancellation_requested"}
	case "empty":
		return cancelBody{}
	case "canceled":
		if cancelled {
			st, outcome = runcomfy.StatusCanceled, runcomfy.StatusCanceled
		}
	}
	return cancelBody{RequestID: id, Status: a.wireStatus(st), Outcome: outcome}
}

// medium is what kind of file an output is.
type medium struct {
	key              string // output key for one file; a list takes key+"s"
	ext, contentType string
	content          func(requestID string, n int) []byte
}

// mediumOf is the medium of an OutputKind's files; ok is false for "text",
// which has none.
func mediumOf(kind string) (m medium, ok bool) {
	switch kind {
	case "image", "images":
		return medium{"image", ".png", "image/png", ImageBytes}, true
	case "audio", "audios":
		return medium{"audio", ".mp3", "audio/mpeg", AudioBytes}, true
	case "text":
		return medium{}, false
	}
	return medium{"video", ".mp4", "video/mp4", OutputBytes}, true
}

// outputCount is how many outputs a job of this kind has.
func outputCount(kind string, perJob int) int {
	if kind == "text" {
		return 1
	}
	return perJob
}

// OutputText is the text output of a request under OutputKind "text".
func OutputText(requestID string) string { return "caption for " + requestID }

// OutputBytesFor is the content of output n of a request under OutputKind
// kind: the file's bytes, the decoded data URI for "data", the text for
// "text" (n = 0 only; nil otherwise).
func OutputBytesFor(kind, requestID string, n int) []byte {
	m, ok := mediumOf(kind)
	if !ok {
		if n != 0 {
			return nil
		}
		return []byte(OutputText(requestID))
	}
	return m.content(requestID, n)
}

// ExpectedOutput is what output n of a job created under cfg should hold
// (see OutputBytesFor), or nil when such a job has no output n.
func ExpectedOutput(cfg Config, requestID string, n int) []byte {
	cfg = withDefaults(cfg)
	if n < 0 || n >= outputCount(cfg.Answers.OutputKind, cfg.OutputsPerJob) {
		return nil
	}
	return OutputBytesFor(cfg.Answers.OutputKind, requestID, n)
}

// outputAnswer is a successful result's "output" for job id with its kind
// and number of outputs; filesBase is the files host's base URL and gen
// the URL generation (see job.resultFetches).
func outputAnswer(kind, filesBase, id string, outputs, gen int) any {
	m, ok := mediumOf(kind)
	if !ok {
		return map[string]any{"text": OutputText(id)}
	}
	urls := make([]string, outputs)
	for i := range urls {
		if kind == "data" {
			urls[i] = "data:" + m.contentType + ";base64," + base64.StdEncoding.EncodeToString(m.content(id, i))
		} else {
			urls[i] = fmt.Sprintf("%s/files/%s/%d%s?v=%d", filesBase, id, i, m.ext, gen)
		}
	}
	switch kind {
	case "nested":
		files := make([]map[string]string, len(urls))
		for i, u := range urls {
			files[i] = map[string]string{"url": u}
		}
		return map[string]any{"data": map[string]any{"files": files}, "seed": 7}
	case "videos", "images", "audios":
		return map[string]any{kind: urls}
	}
	if len(urls) == 1 {
		return map[string]any{m.key: urls[0]}
	}
	return map[string]any{m.key + "s": urls}
}
