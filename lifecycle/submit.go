package lifecycle

import "fmt"

// Answer is what one API call came back with, in terms that do not depend
// on the HTTP client: the caller fills it from whatever its client returns.
type Answer struct {
	// NotSent: the request was never fully written (dial, DNS, TLS,
	// refused, or stopped before sending), so the server cannot have acted
	// on it.
	NotSent bool
	// HTTPStatus is 0 when no answer arrived (a timeout or a connection cut
	// after the request was written).
	HTTPStatus int
	Code       int    // the body's error_code; 0 when absent
	Message    string // the server's message, scrubbed of the token by the caller
	// Malformed: a 2xx body the client could not use.
	Malformed bool
}

// Known error_code values of the Model API.
const (
	CodeBadModel       = 400001
	CodeNoBalance      = 400002
	CodeBadToken       = 400004
	CodeNotYourRequest = 403001
	CodeNotFound       = 404001
)

// Account reports an answer that no job can get past until the user acts:
// a rejected token, a forbidden account, no balance. Every submission stops.
func (a Answer) Account() bool {
	switch {
	case a.Code == CodeBadToken, a.Code == CodeNoBalance:
		return true
	case a.HTTPStatus == 401, a.HTTPStatus == 402:
		return true
	}
	return false
}

// serverCode reports an error_code of the 5xxxxx family: the server failed
// while handling the request, which it may already have acted on.
func (a Answer) serverCode() bool { return a.Code >= 500000 && a.Code < 600000 }

// SubmitRetryable reports a submit answer that proves no job was created,
// so that the same POST may be sent again: the request never left, or 429
// naming no request (requestID is whatever the answer carried as
// request_id, as for Submit). Nothing else does — not even 503, which a
// gateway may send after the API created the job (RunComfy's partner nodes
// POST exactly once).
func SubmitRetryable(a Answer, requestID string) bool {
	return requestID == "" && (a.NotSent || a.HTTPStatus == 429)
}

// SubmitDecision is what a submit answer means for its job.
type SubmitDecision struct {
	Step
	// StopAccount: stop every submission of this run (exit 2); the job
	// itself goes back to pending.
	StopAccount bool
}

// Submit decides what a submit answer means. requestID is whatever scalar
// the answer carried as request_id, as text ("" when none): a job with a
// request id is at RunComfy whatever else the answer says, because the id is
// all it takes to poll it, and losing it would lose a paid job.
func Submit(a Answer, requestID string) SubmitDecision {
	if requestID != "" {
		return SubmitDecision{Step: Step{To: Queued, RequestID: requestID, Detail: "request " + requestID}}
	}
	why := a.Message
	if why == "" {
		why = describe(a)
	}
	d := func(to State, stop bool, detail string) SubmitDecision {
		return SubmitDecision{Step: Step{To: to, Error: why, Detail: detail + ": " + why}, StopAccount: stop}
	}
	switch {
	case a.NotSent:
		return d(Pending, false, "not sent")
	case a.Account(), a.HTTPStatus == 403:
		// 401, 402 and 403 are refused at the door (RunComfy's partner
		// nodes call them unauthorized and insufficient balance): no job.
		return d(Pending, true, "the account was refused")
	case a.HTTPStatus == 429:
		return d(Pending, false, "rate limited")
	case a.HTTPStatus/100 == 2 && a.serverCode():
		return d(Unknown, false, "the server failed while handling it; it may have been created")
	case a.HTTPStatus/100 == 2 && a.Code/100000 == 4:
		return d(Failed, false, "rejected")
	case a.HTTPStatus == 408:
		return d(Unknown, false, "timed out at the server; it may have been created")
	case a.HTTPStatus/100 == 4:
		return d(Failed, false, "rejected")
	default:
		// No answer after sending, any 5xx (503 included), a 2xx without a
		// request id or with an error_code nobody documented, a 1xx or 3xx:
		// the job may exist and be billed.
		return d(Unknown, false, "outcome unknown; it may be running and billed")
	}
}

func describe(a Answer) string {
	switch {
	case a.NotSent:
		return "the request was not sent"
	case a.HTTPStatus == 0:
		return "no answer after the request was sent"
	case a.Code != 0:
		return fmt.Sprintf("HTTP %d, error_code %d", a.HTTPStatus, a.Code)
	case a.HTTPStatus/100 == 2:
		return fmt.Sprintf("HTTP %d without a request id", a.HTTPStatus)
	}
	return fmt.Sprintf("HTTP %d", a.HTTPStatus)
}
