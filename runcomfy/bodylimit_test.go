package runcomfy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// paddedJSON is a JSON object of exactly n bytes (n >= len(head)+14):
// head's fields plus an ignored "pad" string.
func paddedJSON(head string, n int) string {
	prefix := `{"pad":"`
	rest := `",` + strings.TrimPrefix(head, "{")
	return prefix + strings.Repeat("x", n-len(prefix)-len(rest)) + rest
}

// outputJSON is a result answer of exactly n bytes whose output is a
// data: URL, as results inline: the client reads every byte of it.
func outputJSON(n int) string {
	head := `{"status":"completed","output":{"video":"data:video/mp4;base64,`
	tail := `"}}`
	return head + strings.Repeat("A", n-len(head)-len(tail)) + tail
}

// sized answers body with Content-Length, or chunked when chunked is set
// (so that the client cannot know the size before reading).
func sized(body string, chunked bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if !chunked {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		}
		w.WriteHeader(200)
		for rest := body; rest != ""; {
			n := min(len(rest), 32<<10)
			if _, err := io.WriteString(w, rest[:n]); err != nil {
				return
			}
			if chunked {
				w.(http.Flusher).Flush()
			}
			rest = rest[n:]
		}
	}
}

// TestBodyLimitPerCall: status, submit, cancel and model answers are
// refused past 1 MiB, result answers past 64 MiB; a refused answer is
// malformed, not retried, and says which limit it broke. A result of
// 50 MB, as inline data: URL outputs make, is read.
func TestBodyLimitPerCall(t *testing.T) {
	const mib = 1 << 20
	type call func(c *Client) error
	status := func(c *Client) error { _, err := c.Status(context.Background(), "r1"); return err }
	result := func(c *Client) error {
		res, err := c.Result(context.Background(), "r1")
		if err == nil && res.Status != "completed" {
			t.Errorf("result status %q, want completed", res.Status)
		}
		return err
	}
	// wholeOutput is a result whose output must come whole.
	wholeOutput := func(size int) call {
		return func(c *Client) error {
			res, err := c.Result(context.Background(), "r1")
			if want := outputJSON(size); err == nil && `{"status":"completed","output":`+string(res.Output)+`}` != want {
				t.Errorf("result output of %d bytes, want the %d of the answer's", len(res.Output), len(want)-len(`{"status":"completed","output":}`))
			}
			return err
		}
	}
	submit := func(c *Client) error {
		_, err := c.Submit(context.Background(), "m/x", map[string]any{}, SubmitOptions{})
		return err
	}
	cancel := func(c *Client) error { _, err := c.Cancel(context.Background(), "r1"); return err }
	model := func(c *Client) error { _, err := c.Model(context.Background(), "m/x"); return err }

	for _, tt := range []struct {
		name  string
		call  call
		head  string // the answer is paddedJSON(head, size), or outputJSON(size) when ""
		size  int
		limit string // "" when the answer must be read
	}{
		{"status of 1 MiB", status, `{"status":"in_queue"}`, mib, ""},
		{"status of 1 MiB + 1", status, `{"status":"in_queue"}`, mib + 1, "1 MiB"},
		{"status of 2 MiB", status, `{"status":"in_queue"}`, 2 * mib, "1 MiB"},
		{"submit of 2 MiB", submit, `{"request_id":"r1"}`, 2 * mib, "1 MiB"},
		{"cancel of 2 MiB", cancel, `{"outcome":"cancelled"}`, 2 * mib, "1 MiB"},
		{"model of 2 MiB", model, `{"model_id":"m/x"}`, 2 * mib, "1 MiB"},
		// Past the old 16 MiB limit. (Larger answers take seconds to
		// decode under -race: the exact 64 MiB edge is held by
		// TestReadAnswerEdges, 50 MB answers by BenchmarkResultMemory.)
		{"result of 20 MB", result, `{"status":"completed","output":{"video":"data:video/mp4;base64,AAAA"}}`, 20_000_000, ""},
		{"result whose output is 20 MB", wholeOutput(20_000_000), "", 20_000_000, ""},
		{"result of 64 MiB + 1", result, `{"status":"completed"}`, 64*mib + 1, "64 MiB"},
		{"result whose output is 64 MiB + 1", result, "", 64*mib + 1, "64 MiB"},
	} {
		for _, chunked := range []bool{false, true} {
			if chunked && tt.size > 32*mib && tt.limit != "" {
				continue // read whole before refused: TestReadAnswerEdges
			}
			name := tt.name
			if chunked {
				name += ", chunked"
			}
			t.Run(name, func(t *testing.T) {
				body := outputJSON(tt.size)
				if tt.head != "" {
					body = paddedJSON(tt.head, tt.size)
				}
				s := &script{handlers: []http.HandlerFunc{sized(body, chunked)}}
				srv := httptest.NewServer(s)
				defer srv.Close()
				c := newTestClient(t, Options{BaseURL: srv.URL, MaxAttempts: 3})
				err := tt.call(c)
				if tt.limit == "" {
					if err != nil {
						t.Fatalf("answer of %d bytes: %v", tt.size, err)
					}
					return
				}
				if err == nil {
					t.Fatalf("answer of %d bytes accepted; want refused over the %s size limit", tt.size, tt.limit)
				}
				if !IsMalformed(err) || IsTransient(err) || s.n.Load() != 1 {
					t.Errorf("over the limit: malformed %v, transient %v, %d requests; want malformed, permanent, 1 request: %v",
						IsMalformed(err), IsTransient(err), s.n.Load(), err)
				}
				if msg := err.Error(); !strings.Contains(msg, "size limit") || !strings.Contains(msg, tt.limit) {
					t.Errorf("error %q does not name the %s size limit", msg, tt.limit)
				}
				if len(err.Error()) > 2000 {
					t.Errorf("error message of %d bytes: the answer must not be copied into it whole", len(err.Error()))
				}
			})
		}
	}
}

// TestReadAnswerEdges holds readAnswer to each call's limit to the byte,
// with the length declared or not, and checks that what it reserved covers
// what it returns: a result's answer from the budget, a small answer (at
// most maxAnswer) outside it (see maxBodiesHeld). A result answer is read
// through its filter, and the limit counts the bytes received: an answer
// that is not an object passes whole, a padded one is refused past the
// limit though what is kept of it is small.
func TestReadAnswerEdges(t *testing.T) {
	c := newTestClient(t, Options{})
	big := bytes.Repeat([]byte("x"), maxResultAnswer+1)
	for _, call := range []struct {
		op     string
		limit  int64
		padded bool
	}{{"status", maxAnswer, false}, {"models", maxResultAnswer, false}, {"result", maxResultAnswer, false}, {"result", maxResultAnswer, true}} {
		limit := call.limit
		for _, size := range []int64{0, 1, probeSize - 1, probeSize, probeSize + 1, limit - 1, limit, limit + 1} {
			body, want := big[:size], big[:size]
			if call.padded {
				if size < 20 {
					continue
				}
				body = []byte(paddedJSON(`{"status":"completed"}`, int(size)))
				want = []byte(`{"pad":null,"status":"completed"}`)
				if size-int64(len(`{"pad":,"status":"completed"}`)) <= smallValue {
					want = body
				}
			}
			for _, declared := range []bool{true, false} {
				length := int64(-1)
				if declared {
					length = size
				}
				var held int64
				data, err := c.readAnswer(context.Background(), nil, call.op, bytes.NewReader(body), length, limit, &held)
				where := fmt.Sprintf("%s, padded %v, limit %d, size %d, declared %v", call.op, call.padded, limit, size, declared)
				switch {
				case size > limit && (!IsMalformed(err) || !strings.Contains(err.Error(), "size limit of "+sizeText(limit))):
					t.Errorf("%s: err %v, want over the size limit", where, err)
				case size <= limit && (err != nil || !bytes.Equal(data, want)):
					t.Errorf("%s: %d bytes, want %d: %v", where, len(data), len(want), err)
				case size <= limit && limit > maxAnswer && held < int64(cap(data)):
					t.Errorf("%s: %d bytes reserved for a buffer of %d", where, held, cap(data))
				case limit <= maxAnswer && held != 0:
					t.Errorf("%s: %d bytes reserved for a small answer, which must not wait for results", where, held)
				case call.padded && len(data) < len(body) && held > probeSize:
					t.Errorf("%s: %d bytes reserved for an answer of %d kept", where, held, len(data))
				}
				if held > maxBodiesHeld {
					t.Errorf("%s: reserved %d, over the budget", where, held)
				}
				c.bodies.release(&held)
			}
		}
	}
	if got := c.bodies.held.Load(); got != 0 {
		t.Errorf("%d bytes still reserved after every read released", got)
	}
	// A short body is a cut-off answer, not a malformed one, whole or
	// filtered.
	for _, op := range []string{"status", "result"} {
		var held int64
		_, err := c.readAnswer(context.Background(), nil, op, bytes.NewReader([]byte(`{"status":"c`)), 20, maxAnswer, &held)
		if err != io.ErrUnexpectedEOF {
			t.Errorf("%s body shorter than declared: %v, want unexpected EOF", op, err)
		}
		cut := errors.New("connection reset")
		_, err = c.readAnswer(context.Background(), nil, op, io.MultiReader(bytes.NewReader([]byte(`{"status":"c`)), iotest.ErrReader(cut)), -1, maxResultAnswer, &held)
		if !errors.Is(err, cut) {
			t.Errorf("%s body cut off: %v, want the read's error", op, err)
		}
		c.bodies.release(&held)
	}
	if g := growthReserve(maxResultAnswer); g > maxBodiesHeld {
		t.Errorf("growthReserve(%d) = %d, over the budget of %d: such a read would wait forever", maxResultAnswer, g, maxBodiesHeld)
	}
}
