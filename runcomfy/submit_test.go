package runcomfy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	"comfybatch/lifecycle"
)

// TestBeforeSendOncePerAttempt: BeforeSend runs each time an attempt is let
// go, before that attempt reaches the server, and only then.
func TestBeforeSendOncePerAttempt(t *testing.T) {
	tests := []struct {
		name     string
		handlers []http.HandlerFunc
		want     int64 // BeforeSend calls and requests alike
		wantOK   bool
		wantID   string // the request id Submit returns; "r1" when ok
	}{
		{"200", []http.HandlerFunc{reply(200, okSubmit)}, 1, true, ""},
		{"429 then 200", []http.HandlerFunc{reply(429, ""), reply(200, okSubmit)}, 2, true, ""},
		{"429, 429 then 200", []http.HandlerFunc{reply(429, "", "Retry-After", "1"), reply(429, ""), reply(200, okSubmit)}, 3, true, ""},
		{"503", []http.HandlerFunc{reply(503, ""), reply(200, okSubmit)}, 1, false, ""},
		{"400", []http.HandlerFunc{reply(400, `{"error_code":400001}`)}, 1, false, ""},
		// A 429 that names a request created it all the same: sending again
		// would pay twice and lose the first id (found in review).
		{"429 naming a request", []http.HandlerFunc{reply(429, `{"request_id":"first"}`), reply(200, okSubmit)}, 1, false, "first"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before atomic.Int64
			s := &script{}
			for _, h := range tt.handlers {
				s.handlers = append(s.handlers, func(w http.ResponseWriter, r *http.Request) {
					// The n-th request must come after the n-th BeforeSend.
					if got, want := before.Load(), s.n.Load(); got != want {
						t.Errorf("request %d arrived after %d BeforeSend calls", want, got)
					}
					h(w, r)
				})
			}
			srv := httptest.NewServer(s)
			defer srv.Close()
			clk := newClock()
			c := newTestClient(t, Options{BaseURL: srv.URL, MaxAttempts: 4, Sleep: clk.Sleep, Now: clk.Now})
			res, err := c.Submit(context.Background(), "m/x", map[string]any{}, SubmitOptions{
				BeforeSend: func() error { before.Add(1); return nil },
			})
			wantID := tt.wantID
			if tt.wantOK {
				wantID = "r1"
			}
			if tt.wantOK != (err == nil) || string(res.RequestID) != wantID {
				t.Errorf("Submit = %+v, %v; want ok %v, request id %q", res, err, tt.wantOK, wantID)
			}
			if got := before.Load(); got != tt.want {
				t.Errorf("BeforeSend ran %d times, want %d", got, tt.want)
			}
			if got := s.n.Load(); got != tt.want {
				t.Errorf("server got %d requests, want %d", got, tt.want)
			}
		})
	}
}

// TestBeforeSendRunsForUnsentAttempts: an attempt that never reaches the
// server (connection refused) was still let go, so BeforeSend ran for it.
func TestBeforeSendRunsForUnsentAttempts(t *testing.T) {
	clk := newClock()
	c := newTestClient(t, Options{BaseURL: "http://127.0.0.1:1", MaxAttempts: 3, Sleep: clk.Sleep, Now: clk.Now})
	var before atomic.Int64
	_, err := c.Submit(context.Background(), "m/x", map[string]any{}, SubmitOptions{
		BeforeSend: func() error { before.Add(1); return nil },
	})
	if !SubmitNotCreated(err) {
		t.Fatalf("err = %v, want a not-sent error", err)
	}
	if got := before.Load(); got != 3 {
		t.Errorf("BeforeSend ran %d times for 3 attempts", got)
	}
}

// TestBeforeSendErrorAborts: an error from BeforeSend stops the submission
// before anything is written, on the first attempt or a later one.
func TestBeforeSendErrorAborts(t *testing.T) {
	boom := errors.New("ledger write failed")
	for _, tt := range []struct {
		name     string
		failOn   int64 // the BeforeSend call that fails
		handlers []http.HandlerFunc
		wantReqs int64
	}{
		{"first attempt", 1, []http.HandlerFunc{reply(200, okSubmit)}, 0},
		{"after a 429", 2, []http.HandlerFunc{reply(429, ""), reply(200, okSubmit)}, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := &script{handlers: tt.handlers}
			srv := httptest.NewServer(s)
			defer srv.Close()
			clk := newClock()
			c := newTestClient(t, Options{BaseURL: srv.URL, Sleep: clk.Sleep, Now: clk.Now})
			var before atomic.Int64
			_, err := c.Submit(context.Background(), "m/x", map[string]any{}, SubmitOptions{
				BeforeSend: func() error {
					if before.Add(1) == tt.failOn {
						return boom
					}
					return nil
				},
			})
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, boom) {
				t.Fatalf("err = %v; want an *Error wrapping BeforeSend's", err)
			}
			if !e.NotSent || e.HTTPStatus != 0 || e.Op != "submit" || !SubmitNotCreated(err) {
				t.Errorf("err = %+v; want a not-sent submit error, SubmitNotCreated", e)
			}
			if !strings.Contains(err.Error(), "not sent") {
				t.Errorf("Error() = %q, want it to say the request was not sent", err)
			}
			if got := before.Load(); got != tt.failOn {
				t.Errorf("BeforeSend ran %d times, want %d", got, tt.failOn)
			}
			if got := s.n.Load(); got != tt.wantReqs {
				t.Errorf("server got %d requests, want %d", got, tt.wantReqs)
			}
		})
	}
}

// TestSubmitRequestIDScalar: a request id is kept whatever scalar it comes
// as; null, an object or an array is no id, and the answer is malformed.
func TestSubmitRequestIDScalar(t *testing.T) {
	tests := []struct {
		raw  string // the request_id value; "" for absent
		want Scalar
	}{
		{`"r1"`, "r1"},
		{`" r1 "`, "r1"},
		{`"1000017"`, "1000017"},
		{`1000017`, "1000017"},
		{`12345678901234567890123`, "12345678901234567890123"}, // past int64 and float64 precision
		{`1.5e3`, "1.5e3"},
		{`-7`, "-7"},
		{`true`, ""}, // names no request: outcome open
		{`false`, ""},
		{`null`, ""},
		{`{"id":"r1"}`, ""},
		{`["r1"]`, ""},
		{`""`, ""},
		{``, ""},
	}
	for _, tt := range tests {
		body := `{"status_url":"x"}`
		if tt.raw != "" {
			body = `{"request_id":` + tt.raw + `,"status_url":"x"}`
		}
		var direct SubmitResponse
		if err := json.Unmarshal([]byte(body), &direct); err != nil || direct.RequestID != tt.want {
			t.Errorf("Unmarshal(%s) = %q, %v; want %q", body, direct.RequestID, err, tt.want)
		}

		srv := httptest.NewServer(reply(200, body))
		c := newTestClient(t, Options{BaseURL: srv.URL, MaxAttempts: 1})
		res, err := c.Submit(context.Background(), "m/x", map[string]any{}, SubmitOptions{})
		srv.Close()
		if tt.want != "" {
			if err != nil || res.RequestID != tt.want {
				t.Errorf("%s: Submit = %+v, %v; want id %q", body, res, err, tt.want)
			}
			continue
		}
		if err == nil || !IsMalformed(err) || SubmitNotCreated(err) || IsTransient(err) {
			t.Errorf("%s: Submit = %+v, %v; want a malformed answer, outcome open, not retried", body, res, err)
		}
	}
}

// TestCostKeptAsSent: a result's cost and a model's price are the server's
// JSON, unparsed.
func TestCostKeptAsSent(t *testing.T) {
	for _, tt := range []struct{ raw, want string }{
		{`0.25`, `0.25`},
		{`"0.25"`, `"0.25"`},
		{`1e-3`, `1e-3`},
		{``, ``},
	} {
		field := func(name string) string {
			if tt.raw == "" {
				return ""
			}
			return `,"` + name + `":` + tt.raw
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/result") {
				io.WriteString(w, `{"status":"completed"`+field("cost")+`}`)
				return
			}
			io.WriteString(w, `{"model_id":"m/x"`+field("base_price_usd")+`}`)
		}))
		c := newTestClient(t, Options{BaseURL: srv.URL})
		res, err := c.Result(context.Background(), "r1")
		if err != nil || string(res.Cost) != tt.want {
			t.Errorf("cost %s: Result.Cost = %s, %v; want %s", tt.raw, res.Cost, err, tt.want)
		}
		m, err := c.Model(context.Background(), "m/x")
		if err != nil || string(m.BasePriceUSD) != tt.want {
			t.Errorf("price %s: BasePriceUSD = %s, %v; want %s", tt.raw, m.BasePriceUSD, err, tt.want)
		}
		srv.Close()
	}
}

// scrubToken has characters that JSON may escape, so that both spellings
// of it can be echoed.
const scrubToken = "tok-<&>-9f8e"

// escapedToken is scrubToken as encoding/json writes it in a string.
const escapedToken = `tok-\u003c\u0026\u003e-9f8e`

func assertNoToken(t *testing.T, what, s string) {
	t.Helper()
	if strings.Contains(s, scrubToken) || strings.Contains(s, escapedToken) {
		t.Errorf("%s shows the token: %s", what, s)
	}
}

// TestAnswersScrubbedOfToken: whatever the server echoes of the token, as
// written or JSON-escaped, in a 2xx answer's data or in an error answer,
// comes back as [redacted].
func TestAnswersScrubbedOfToken(t *testing.T) {
	if q, _ := json.Marshal(scrubToken); string(q) != `"`+escapedToken+`"` {
		t.Fatalf("encoding/json writes the token as %s, not %q: fix escapedToken", q, escapedToken)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/result"):
			fmt.Fprintf(w, `{"request_id":"r1","status":"failed","error":{"message":"bad auth %s","echo":"%s"},`+
				`"output":{"video":"https://cdn.example/v.mp4?k=%s","note":"%s"}}`,
				scrubToken, escapedToken, escapedToken, scrubToken)
		case strings.HasSuffix(r.URL.Path, "/status"):
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"error_code":400004,"error_message":"token %s revoked","detail":"got %s"}`, escapedToken, scrubToken)
		case strings.HasSuffix(r.URL.Path, "/cancel"):
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprintf(w, "<html>upstream said %s</html>", scrubToken)
		default: // submit
			fmt.Fprintf(w, `{"request_id":"r1","status_url":"https://x/%s"}`, escapedToken)
		}
	}))
	defer srv.Close()
	c := newTestClient(t, Options{BaseURL: srv.URL, Token: scrubToken, MaxAttempts: 1})
	ctx := context.Background()

	res, err := c.Result(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	assertNoToken(t, "Result", fmt.Sprintf("%+v %s %s", res, res.Error, res.Output))
	if got, want := ErrorText(res.Error), `{"message":"bad auth [redacted]","echo":"[redacted]"}`; got != want {
		t.Errorf("ErrorText(result error) = %s, want %s", got, want)
	}
	if urls := lifecycle.Outputs(res.Output); len(urls) != 1 || urls[0] != "https://cdn.example/v.mp4?k=[redacted]" {
		t.Errorf("OutputURLs = %q, want the URL with the token redacted", urls)
	}

	sub, err := c.Submit(ctx, "m/x", map[string]any{}, SubmitOptions{})
	if err != nil || sub.RequestID != "r1" || sub.StatusURL != "https://x/[redacted]" {
		t.Errorf("Submit = %+v, %v; want the status URL redacted", sub, err)
	}

	_, err = c.Status(ctx, "r1")
	var e *Error
	if !errors.As(err, &e) || !IsAccountError(err) {
		t.Fatalf("Status err = %v, want an account error", err)
	}
	assertNoToken(t, "Status error", err.Error())
	if want := "token [redacted] revoked: got [redacted]"; e.Message != want {
		t.Errorf("Message = %q, want %q", e.Message, want)
	}

	_, err = c.Cancel(ctx, "r1")
	if err == nil || !strings.Contains(err.Error(), "upstream said [redacted]") {
		t.Errorf("Cancel err = %v, want the redacted text of the page", err)
	}
	assertNoToken(t, "Cancel error", fmt.Sprint(err))
}

// TestTokenWrittenWithOtherEscapesIsScrubbed: a server may write the
// token with escapes encoding/json does not use (a \/ as some encoders
// write every slash, hex in capitals, an escaped letter); decoding the
// answer would restore it, so it is redacted too.
func TestTokenWrittenWithOtherEscapesIsScrubbed(t *testing.T) {
	const token = "tok/<&>-9f8e"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"request_id":"r1","status":"failed","error":"bad auth tok\/\u003C\u0026\u003E-9f8e",`+
			`"output":{"video":"https://cdn.example/v.mp4?k=\u0074ok/<&>-9f8e&x=\"y"}}`)
	}))
	defer srv.Close()
	c := newTestClient(t, Options{BaseURL: srv.URL, Token: token, MaxAttempts: 1})
	res, err := c.Result(context.Background(), "r1")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ErrorText(res.Error), "bad auth [redacted]"; got != want {
		t.Errorf("ErrorText(result error) = %q, want %q", got, want)
	}
	if urls := lifecycle.Outputs(res.Output); len(urls) != 1 || urls[0] != `https://cdn.example/v.mp4?k=[redacted]&x="y` {
		t.Errorf("OutputURLs = %q, want the URL with the token redacted", urls)
	}
	// In a long string, the token is found across hasToken's windows.
	for _, at := range []int{0, 64<<10 - 5, 64 << 10, 200 << 10} {
		quoted := `"\/` + strings.Repeat("x", at) + `\u0074ok/<&>-9f8e` + strings.Repeat("y", 1000) + `"`
		if !hasToken([]byte(quoted), token) {
			t.Errorf("token escaped after %d bytes of a string: not found", at)
		}
	}
}

// TestValidationDetailRendered: a 422's detail list reads field by field.
func TestValidationDetailRendered(t *testing.T) {
	for _, tt := range []struct{ body, want string }{
		{`{"detail":[{"loc":["body","prompt"],"msg":"field required"},{"loc":["body","seed"],"msg":"too big"}]}`,
			"prompt: field required; seed: too big"},
		{`{"detail":[{"loc":["body","images",0,"url"],"msg":"bad url","type":"x"}]}`, "images.0.url: bad url"},
		{`{"detail":[{"loc":["query","include_cost"],"msg":"not a bool"}]}`, "include_cost: not a bool"},
		{`{"detail":[{"loc":["body"],"msg":"invalid JSON"}]}`, "body: invalid JSON"},
		{`{"detail":[{"msg":"no location"}]}`, "no location"},
		{`{"message":"Validation failed","detail":[{"loc":["body","seed"],"msg":"too big"}]}`, "Validation failed: seed: too big"},
		{`{"detail":"seed must be an integer"}`, "seed must be an integer"},
		{`{"detail":[{"loc":["body","x"]}]}`, `[{"loc":["body","x"]}]`},
	} {
		s := &script{handlers: []http.HandlerFunc{reply(http.StatusUnprocessableEntity, tt.body)}}
		srv := httptest.NewServer(s)
		c := newTestClient(t, Options{BaseURL: srv.URL})
		_, err := c.Submit(context.Background(), "m/x", map[string]any{"prompt": 1}, SubmitOptions{})
		srv.Close()
		var e *Error
		if !errors.As(err, &e) || e.HTTPStatus != http.StatusUnprocessableEntity {
			t.Fatalf("%s: err = %v, want a 422 *Error", tt.body, err)
		}
		if e.Message != tt.want {
			t.Errorf("%s: Message = %q, want %q", tt.body, e.Message, tt.want)
		}
		if IsTransient(err) || SubmitNotCreated(err) || IsAccountError(err) || IsMalformed(err) || s.n.Load() != 1 {
			t.Errorf("%s: a 422 must be a permanent, open-outcome, unretried error: %v", tt.body, err)
		}
	}
}

// TestIsMalformed: a 2xx answer the client cannot use is malformed and not
// retried, whatever the call; an error answer or a failure to connect is not.
func TestIsMalformed(t *testing.T) {
	huge := `{"status":"` + strings.Repeat("a", maxAnswer) + `"}`
	for _, tt := range []struct {
		name string
		h    http.HandlerFunc
		want bool
	}{
		{"not JSON", reply(200, `<html>`), true},
		{"array", reply(200, `[1,2]`), true},
		{"truncated", reply(200, `{"status":"in_q`), true},
		{"over the size limit", reply(200, huge), true},
		{"fine", reply(200, `{"status":"in_queue"}`), false},
		{"empty 2xx", reply(200, ``), false},
		{"500 not JSON", reply(500, `<html>`), false},
		{"400", reply(400, `{"error_code":400001}`), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := &script{handlers: []http.HandlerFunc{tt.h}}
			srv := httptest.NewServer(s)
			defer srv.Close()
			c := newTestClient(t, Options{BaseURL: srv.URL, MaxAttempts: 3})
			_, err := c.Status(context.Background(), "r1")
			if got := IsMalformed(err); got != tt.want {
				t.Errorf("IsMalformed(%v) = %v, want %v", err, got, tt.want)
			}
			if tt.want && (IsTransient(err) || s.n.Load() != 1) {
				t.Errorf("malformed answer: IsTransient %v after %d requests; want false after 1", IsTransient(err), s.n.Load())
			}
		})
	}
	c := newTestClient(t, Options{BaseURL: "http://127.0.0.1:1", MaxAttempts: 1})
	if _, err := c.Status(context.Background(), "r1"); err == nil || IsMalformed(err) {
		t.Errorf("connection refused: IsMalformed(%v) = true", err)
	}
	if IsMalformed(localError("status", errors.New("x"))) {
		t.Error("a local error is not malformed")
	}
}

// An error answer that names the request it created keeps that id beside
// the error (found in review: a 200 with error_code 400001 and a request id
// was recorded failed, which --retry-failed would pay again).
func TestSubmitErrorAnswerKeepsItsRequestID(t *testing.T) {
	for _, tt := range []struct {
		status int
		body   string
	}{
		{200, `{"request_id":"r1","error_code":400001,"error_message":"bad model"}`},
		{200, `{"request_id":"r2","error_code":500001}`},
		{500, `{"request_id":"r3","error_message":"internal"}`},
		{503, `{"request_id":4242}`},
	} {
		srv := httptest.NewServer(reply(tt.status, tt.body))
		c := newTestClient(t, Options{BaseURL: srv.URL, MaxAttempts: 1})
		res, err := c.Submit(context.Background(), "m/x", map[string]any{}, SubmitOptions{})
		srv.Close()
		if err == nil || res.RequestID == "" {
			t.Errorf("%d %s: Submit = %+v, %v; want the error and the request id", tt.status, tt.body, res, err)
		}
	}
}

// FuzzHasToken: hasToken finds the token in every JSON string that
// encoding/json decodes to one holding it.
func FuzzHasToken(f *testing.F) {
	for _, s := range []string{`"tok\/\u003C\u0026\u003E-9f8e"`, `"a\ud83d\ude00b"`, `"\u0074ok/<&>-9f8e"`, `"x\"y"`} {
		f.Add([]byte(s), "tok/<&>-9f8e")
	}
	f.Fuzz(func(t *testing.T, quoted []byte, token string) {
		if len(quoted) < 2 || token == "" || !utf8.ValidString(token) || strings.ContainsRune(token, utf8.RuneError) {
			return
		}
		var s string
		if json.Unmarshal(quoted, &s) == nil && strings.Contains(s, token) && !hasToken(quoted, token) {
			t.Fatalf("%q decodes to %q, which holds %q: not found", quoted, s, token)
		}
	})
}
