package lifecycle

import "testing"

// Each row is an answer shape one of RunComfy's own clients handles; the
// source names the client file that handles or tests it (CLI =
// runcomfy-com/runcomfy-cli, PN = runcomfy-com/comfyui-runcomfy-partner-nodes,
// MCP = runcomfy-com/runcomfy-mcp).
func TestSubmit(t *testing.T) {
	tests := []struct {
		name, source string
		a            Answer
		requestID    string
		want         State
		stop         bool
	}{
		{"string request id", "PN tests/test_client.py (request_id job-1)", Answer{HTTPStatus: 200}, "job-1", Queued, false},
		{"202 with request id", "CLI src/cmd/run.rs (any 2xx)", Answer{HTTPStatus: 202}, "0f1e", Queued, false},
		{"numeric request id kept", "PN client.py validate_request_id (ids are [A-Za-z0-9_-])", Answer{HTTPStatus: 200}, "1000017", Queued, false},
		{"2xx with error_code and a request id: the id wins", "PN client.py _request (error_code not examined)", Answer{HTTPStatus: 200, Code: 500001}, "r-1", Queued, false},
		{"empty object", "PN tests/test_client.py ambiguous ({} with 200)", Answer{HTTPStatus: 200, Malformed: true}, "", Unknown, false},
		{"array body", "PN tests/test_async_transport.py test_unknown_submission_never_retries ([])", Answer{HTTPStatus: 200, Malformed: true}, "", Unknown, false},
		{"wrong key", "PN tests/test_async_transport.py ({\"wrong\":\"key\"})", Answer{HTTPStatus: 200, Malformed: true}, "", Unknown, false},
		{"503 after creation", "PN tests/test_async_transport.py ({} with 503)", Answer{HTTPStatus: 503}, "", Unknown, false},
		{"502 from a gateway", "PN tests/test_client.py ({} with 502)", Answer{HTTPStatus: 502}, "", Unknown, false},
		{"500", "CLI src/exit.rs (5xx → 69)", Answer{HTTPStatus: 500}, "", Unknown, false},
		{"504", "CLI src/exit.rs (5xx → 69)", Answer{HTTPStatus: 504}, "", Unknown, false},
		{"timeout after sending", "PN tests/test_client.py test_submit_timeout_is_never_retried", Answer{}, "", Unknown, false},
		{"connection cut after sending", "PN tests/test_async_transport.py (ClientConnectionError)", Answer{Message: "EOF"}, "", Unknown, false},
		{"2xx with server error_code", "MCP runcomfy_client.py:149-158 (2xx error_code raised)", Answer{HTTPStatus: 200, Code: 500001}, "", Unknown, false},
		{"408", "CLI src/exit.rs (408 → 75, retryable)", Answer{HTTPStatus: 408}, "", Unknown, false},
		{"never sent", "PN client.py (network error before sending)", Answer{NotSent: true}, "", Pending, false},
		{"429", "CLI src/cmd/run.rs read_json_actionable (rate limited)", Answer{HTTPStatus: 429}, "", Pending, false},
		{"401", "PN client.py _request (401 → unauthorized); CLI exit 77", Answer{HTTPStatus: 401}, "", Pending, true},
		{"403", "PN client.py _request (403 → unauthorized); CLI exit 77", Answer{HTTPStatus: 403}, "", Pending, true},
		{"402", "PN client.py _request (402 → insufficient_balance)", Answer{HTTPStatus: 402}, "", Pending, true},
		{"400004 bad token", "docs error codes; MCP runcomfy_client.py:125-147", Answer{HTTPStatus: 400, Code: CodeBadToken}, "", Pending, true},
		{"400002 no balance in a 2xx", "MCP runcomfy_client.py:149-158", Answer{HTTPStatus: 200, Code: CodeNoBalance}, "", Pending, true},
		{"400 input rejected", "CLI src/cmd/run.rs (400/422 → schema mismatch, exit 65)", Answer{HTTPStatus: 400}, "", Failed, false},
		{"422 detail array", "CLI src/cmd/run.rs (400/422 → schema mismatch)", Answer{HTTPStatus: 422, Message: "prompt: field required"}, "", Failed, false},
		{"404 model not found", "CLI src/cmd/run.rs (404 → model not found)", Answer{HTTPStatus: 404}, "", Failed, false},
		{"400001 bad model in a 2xx", "docs error codes (400001)", Answer{HTTPStatus: 200, Code: CodeBadModel}, "", Failed, false},
		// The safe default: anything nobody documented may have created a job.
		{"unknown shape: 2xx with an undocumented code", "none: the safe default", Answer{HTTPStatus: 200, Code: 123}, "", Unknown, false},
		{"unknown shape: 3xx", "PN client.py (3xx, redirects off → unknown_submission)", Answer{HTTPStatus: 307}, "", Unknown, false},
		{"unknown shape: 1xx", "none: the safe default", Answer{HTTPStatus: 103}, "", Unknown, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Submit(tt.a, tt.requestID)
			if d.To != tt.want || d.StopAccount != tt.stop {
				t.Fatalf("Submit(%+v, %q) = %s stop=%v, want %s stop=%v (%s)", tt.a, tt.requestID, d.To, d.StopAccount, tt.want, tt.stop, tt.source)
			}
			if !Allowed(Submitting, d.To) {
				t.Fatalf("Submit decided %s, which is no transition from submitting", d.To)
			}
			if d.To == Queued && d.RequestID != tt.requestID {
				t.Fatalf("request id %q not kept: %q", tt.requestID, d.RequestID)
			}
			if d.To != Queued && d.Error == "" {
				t.Fatalf("a submission that did not land records no reason")
			}
			// Only answers that prove no job was created may be retried,
			// and only they leave the job pending without an account stop.
			if SubmitRetryable(tt.a, tt.requestID) && d.To != Pending {
				t.Fatalf("retryable answer decided %s", d.To)
			}
			if d.To == Pending && !SubmitRetryable(tt.a, tt.requestID) && !d.StopAccount {
				t.Fatalf("pending without proof that no job was created")
			}
		})
	}
}

func TestSubmitRetryable(t *testing.T) {
	for _, a := range []Answer{{NotSent: true}, {HTTPStatus: 429}} {
		if !SubmitRetryable(a, "") {
			t.Errorf("SubmitRetryable(%+v) = false", a)
		}
		// An answer that names a request created it, whatever its status.
		if SubmitRetryable(a, "r1") {
			t.Errorf("SubmitRetryable(%+v, r1) = true: the job exists", a)
		}
	}
	for _, a := range []Answer{{HTTPStatus: 503}, {HTTPStatus: 500}, {HTTPStatus: 408}, {}, {HTTPStatus: 200, Code: 500001}, {HTTPStatus: 401}} {
		if SubmitRetryable(a, "") {
			t.Errorf("SubmitRetryable(%+v) = true: a job may exist", a)
		}
	}
}
