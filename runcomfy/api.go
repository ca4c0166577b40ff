// Package runcomfy owns everything about talking to RunComfy's Model API:
// the HTTP client for submit, status, result, cancel and model calls, the
// classification of its errors (which ones prove that no job was created,
// which ones are the account's fault, which ones may be retried), the rule
// that the bearer token only ever goes to the API host, and the lenient
// decoding of responses whose fields and statuses may grow.
package runcomfy

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"

	"comfybatch/lifecycle"
)

// Scalar is a JSON value kept as text when it is a string or a number, and
// as "" when it is null, absent, a boolean, an object or an array.
type Scalar string

func (s *Scalar) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0, string(b) == "null", b[0] == '{', b[0] == '[':
		*s = ""
	case b[0] == '"':
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		*s = Scalar(strings.TrimSpace(str))
	case string(b) == "true", string(b) == "false":
		*s = "" // no request is named true: an id that says nothing
	default:
		*s = Scalar(b) // a number, as written
	}
	return nil
}

// DefaultBaseURL is where the Model API lives.
const DefaultBaseURL = "https://model-api.runcomfy.net"

// Remote statuses the API is known to report. Others are kept verbatim.
const (
	StatusInQueue    = "in_queue"
	StatusInProgress = "in_progress"
	StatusCompleted  = "completed"
	StatusSucceeded  = "succeeded"
	StatusFailed     = "failed"
	StatusCancelled  = "cancelled"
	StatusCanceled   = "canceled"
)

// Terminal reports whether a remote status means the job will not change
// again. (What a status means for a job is lifecycle.Poll's to decide; this
// serves the simulated API.)
func Terminal(status string) bool {
	switch strings.ToLower(status) {
	case StatusCompleted, StatusSucceeded, StatusFailed, StatusCancelled, StatusCanceled:
		return true
	}
	return false
}

// Finished reports whether a remote status means the server finished the
// work and a result should be fetched (which may still hold no output).
func Finished(status string) bool {
	status = strings.ToLower(status)
	return status == StatusCompleted || status == StatusSucceeded
}

// SubmitResponse is the answer to POST /v1/models/{model_id}.
type SubmitResponse struct {
	// RequestID is kept whatever scalar it arrives as: a JSON number is
	// still the id of a job that exists and is billed.
	RequestID Scalar `json:"request_id"`
	StatusURL string `json:"status_url,omitempty"`
	ResultURL string `json:"result_url,omitempty"`
	CancelURL string `json:"cancel_url,omitempty"`
}

// StatusResponse is the answer to GET /v1/requests/{id}/status.
type StatusResponse struct {
	RequestID string `json:"request_id,omitempty"`
	Status    string `json:"status"`
	// QueuePosition is set while Status is in_queue; nil when absent.
	QueuePosition *int `json:"queue_position,omitempty"`
}

// Result is the answer to GET /v1/requests/{id}/result?include_cost=true.
// Before the job ends the server answers with the current status and no
// output.
type Result struct {
	RequestID string `json:"request_id,omitempty"`
	Status    string `json:"status"`
	// QueuePosition may come with an in_queue answer before the end.
	QueuePosition *int            `json:"queue_position,omitempty"`
	Output        json.RawMessage `json:"output,omitempty"`
	Error         json.RawMessage `json:"error,omitempty"`
	CreatedAt     string          `json:"created_at,omitempty"`
	FinishedAt    string          `json:"finished_at,omitempty"`
	ModelID       string          `json:"model_id,omitempty"`
	// Cost in USD as the server sent it (a number or a numeric string);
	// lifecycle.ParseCost reads it.
	Cost json.RawMessage `json:"cost,omitempty"`
}

// CancelResponse is the answer to POST /v1/requests/{id}/cancel.
type CancelResponse struct {
	RequestID string `json:"request_id,omitempty"`
	Status    string `json:"status,omitempty"`
	// Outcome is "cancelled" or "not_cancellable".
	Outcome string `json:"outcome,omitempty"`
}

// ModelInfo is the answer to GET /v1/models/{model_id}; only the fields
// comfybatch uses are decoded.
type ModelInfo struct {
	ModelID      string          `json:"model_id,omitempty"`
	DisplayName  string          `json:"display_name,omitempty"`
	BasePriceUSD json.RawMessage `json:"base_price_usd,omitempty"` // a number or a numeric string
	PriceUnit    string          `json:"price_unit,omitempty"`
	// The catalog's fields (GET /v1/models lists them too), as RunComfy's
	// partner nodes read them: InputSchema is the model's input as a JSON
	// Schema, absent from a list asked without include_schema.
	Kind        string          `json:"kind,omitempty"`
	Categories  []string        `json:"categories,omitempty"`
	InputSchema json.RawMessage `json:"input_schema,omitempty"`
}

// ModelList is the answer to GET /v1/models.
type ModelList struct {
	Models []ModelInfo `json:"models"`
	Total  int         `json:"total"`
}

// Known error_code values of the Model API: lifecycle's, which decides
// what they mean.
const (
	CodeBadModel       = lifecycle.CodeBadModel
	CodeNoBalance      = lifecycle.CodeNoBalance
	CodeBadToken       = lifecycle.CodeBadToken
	CodeNotYourRequest = lifecycle.CodeNotYourRequest
	CodeNotFound       = lifecycle.CodeNotFound
)

// RetryAfterUnset marks an APIError without a usable Retry-After.
const RetryAfterUnset time.Duration = -1
