package runcomfy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"syscall"
	"testing"
)

// TestNeverConnected: only errors raised before any byte of a request left
// prove that the API was never reached; a cut or a timeout after sending,
// an answer of any status, a local failure and a cancellation do not.
func TestNeverConnected(t *testing.T) {
	dial := func(inner error) error {
		return &url.Error{Op: "Post", URL: "http://h/v1", Err: &net.OpError{Op: "dial", Net: "tcp", Err: inner}}
	}
	notSent := func(err error) error {
		return &Error{Op: "submit", NotSent: true, RetryAfter: RetryAfterUnset, Err: err}
	}
	sent := func(err error) error { return &Error{Op: "submit", RetryAfter: RetryAfterUnset, Err: err} }
	refused := dial(os.NewSyscallError("connect", syscall.ECONNREFUSED))
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", notSent(refused), true},
		{"no route", notSent(dial(os.NewSyscallError("connect", syscall.EHOSTUNREACH))), true},
		{"no such host", notSent(dial(&net.DNSError{Err: "no such host", Name: "api.invalid", IsNotFound: true})), true},
		{"dns timeout", notSent(dial(&net.DNSError{Err: "i/o timeout", Name: "api", IsTimeout: true})), true},
		{"unknown authority", notSent(&url.Error{Op: "Get", Err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}}), true},
		{"wrong host name", notSent(&url.Error{Op: "Get", Err: x509.HostnameError{Host: "h", Certificate: &x509.Certificate{}}}), true},
		{"handshake alert", notSent(&url.Error{Op: "Get", Err: tls.AlertError(40)}), true},
		{"https to plain http", notSent(&url.Error{Op: "Get", Err: errors.New("http: server gave HTTP response to HTTPS client")}), true},
		{"handshake timeout", notSent(&url.Error{Op: "Get", Err: errors.New("net/http: TLS handshake timeout")}), true},

		// The request was written: the server may have created the job.
		{"refused but marked sent", sent(refused), false},
		{"reset after sending", sent(&url.Error{Op: "Post", Err: &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}}), false},
		{"EOF after sending", sent(&url.Error{Op: "Post", Err: io.EOF}), false},
		// Not sent, yet the connection was up: not proof the API is unreachable.
		{"write failed", notSent(&url.Error{Op: "Post", Err: &net.OpError{Op: "write", Err: os.NewSyscallError("write", syscall.EPIPE)}}), false},
		{"stopped before sending", notSent(context.Canceled), false},
		{"local failure", localError("submit", errors.New("bad model id")), false},
		{"an answer", &Error{Op: "submit", HTTPStatus: 503, NotSent: true, RetryAfter: RetryAfterUnset, Err: refused}, false},
		{"not the client's error", refused, false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NeverConnected(tt.err); got != tt.want {
				t.Errorf("NeverConnected(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestGiveUpUnreached(t *testing.T) {
	refused := &Error{Op: "status", NotSent: true, RetryAfter: RetryAfterUnset,
		Err: &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}
	cut := &Error{Op: "status", RetryAfter: RetryAfterUnset, Err: io.ErrUnexpectedEOF}
	tests := []struct {
		name     string
		err      error
		answered bool
		tries    int
		want     bool
	}{
		{"first tries", refused, false, FirstContactTries - 1, false},
		{"enough tries", refused, false, FirstContactTries, true},
		{"more tries", refused, false, FirstContactTries + 5, true},
		{"answered before: an outage", refused, true, 100, false},
		{"sent: maybe created", cut, false, 100, false},
		{"429", &Error{Op: "submit", HTTPStatus: 429, RetryAfter: RetryAfterUnset}, false, 100, false},
	}
	for _, tt := range tests {
		if got := GiveUpUnreached(tt.err, tt.answered, tt.tries); got != tt.want {
			t.Errorf("%s: GiveUpUnreached = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestReason(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{&Error{Op: "submit", NotSent: true, Err: &url.Error{Op: "Post", URL: "http://x", Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}}, "connect: connection refused"},
		{&Error{Op: "submit", NotSent: true, Err: &url.Error{Op: "Post", URL: "http://x", Err: &net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "api.invalid", IsNotFound: true}}}}, "no such host api.invalid"},
		{&Error{Op: "model", Err: &url.Error{Op: "Get", URL: "https://x", Err: errors.New("http: server gave HTTP response to HTTPS client")}}, "http: server gave HTTP response to HTTPS client"},
		{fmt.Errorf("plain"), "plain"},
		{nil, ""},
	}
	for _, tt := range tests {
		if got := Reason(tt.err); got != tt.want {
			t.Errorf("Reason(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestUnreachableFailsFast: against an address that refuses connections, a
// call (a submit and a poll alike) gives up after FirstContactTries
// attempts, marked Unreachable, instead of retrying as for a busy API.
func TestUnreachableFailsFast(t *testing.T) {
	clk := newClock()
	c := newTestClient(t, Options{BaseURL: "http://" + closedPort(t), Sleep: clk.Sleep, Now: clk.Now, Rand: func() float64 { return 1 }})
	_, err := c.Submit(context.Background(), "m/x", map[string]any{}, SubmitOptions{})
	if !IsUnreachable(err) || !SubmitNotCreated(err) {
		t.Fatalf("submit: err = %v, want an unreachable, not-created error", err)
	}
	if got := len(clk.Slept()); got != FirstContactTries-1 {
		t.Errorf("submit: %d waits between attempts, want %d (%d attempts)", got, FirstContactTries-1, FirstContactTries)
	}
	if _, err := c.Result(context.Background(), "r1"); !IsUnreachable(err) {
		t.Errorf("result: err = %v, want unreachable", err)
	}
	if since, _ := c.Outage(); !since.IsZero() {
		t.Errorf("an API never reached is not an outage: since %v", since)
	}
}

// TestOutageAfterContact: once the API has answered, the same refusal is an
// outage: retried like any connection error (all MaxAttempts), never
// Unreachable, and reported by Outage until an answer comes again.
func TestOutageAfterContact(t *testing.T) {
	srv := httptest.NewServer(reply(200, `{"request_id":"r1","status":"in_queue"}`))
	addr := srv.Listener.Addr().String()
	clk := newClock()
	c := newTestClient(t, Options{BaseURL: srv.URL, MaxAttempts: 5, Sleep: clk.Sleep, Now: clk.Now, Rand: func() float64 { return 1 }})
	if _, err := c.Result(context.Background(), "r1"); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	_, err := c.Result(context.Background(), "r1")
	if err == nil || IsUnreachable(err) {
		t.Fatalf("err = %v, want a plain connection error", err)
	}
	if got := len(clk.Slept()); got != 4 {
		t.Errorf("%d waits, want 4: an outage is retried as usual", got)
	}
	since, why := c.Outage()
	if since.IsZero() || why != "connect: connection refused" {
		t.Errorf("Outage() = %v, %q; want its start and the refusal", since, why)
	}
	// The API comes back on the same address.
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	back := &http.Server{Handler: reply(200, `{"request_id":"r1","status":"in_queue"}`)}
	go back.Serve(l)
	defer back.Close()
	if _, err := c.Result(context.Background(), "r1"); err != nil {
		t.Fatal(err)
	}
	if since, _ := c.Outage(); !since.IsZero() {
		t.Errorf("the outage is still reported after an answer")
	}
}
