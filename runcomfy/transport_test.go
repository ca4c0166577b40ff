package runcomfy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// authRecorder is a server that remembers the Authorization header of each
// request, by path.
type authRecorder struct {
	mu   sync.Mutex
	seen map[string][]string
	next http.Handler
}

func recordAuth(next http.Handler) (*authRecorder, *httptest.Server) {
	a := &authRecorder{seen: map[string][]string{}, next: next}
	return a, httptest.NewServer(a)
}

func (a *authRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.seen[r.URL.Path] = append(a.seen[r.URL.Path], r.Header.Get("Authorization"))
	a.mu.Unlock()
	if a.next != nil {
		a.next.ServeHTTP(w, r)
		return
	}
	io.WriteString(w, `{"status":"in_queue"}`)
}

func (a *authRecorder) auth(path string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.seen[path]
}

const secret = "s3cret-token"

func TestTokenOnlyToAPIHost(t *testing.T) {
	files, filesSrv := recordAuth(nil)
	defer filesSrv.Close()
	api, apiSrv := recordAuth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, filesSrv.URL+"/file.mp4", http.StatusFound)
			return
		}
		io.WriteString(w, `{"status":"in_queue"}`)
	}))
	defer apiSrv.Close()
	c := newTestClient(t, Options{BaseURL: apiSrv.URL, Token: secret})
	hc := c.HTTPClient()

	if _, err := c.Status(context.Background(), "r1"); err != nil {
		t.Fatal(err)
	}
	if got := api.auth("/v1/requests/r1/status"); len(got) != 1 || got[0] != "Bearer "+secret {
		t.Errorf("API host got Authorization %q, want the bearer token", got)
	}

	// A redirect from the API host to another host: the API hop carries
	// the token, the other hop does not.
	resp, err := hc.Get(apiSrv.URL + "/redirect")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := api.auth("/redirect"); len(got) != 1 || got[0] != "Bearer "+secret {
		t.Errorf("API host (redirecting) got %q", got)
	}
	if got := files.auth("/file.mp4"); len(got) != 1 || got[0] != "" {
		t.Errorf("redirect target got Authorization %q, want none", got)
	}

	// A caller's own Authorization to another host is stripped too.
	req, _ := http.NewRequest("GET", filesSrv.URL+"/own.mp4", nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := files.auth("/own.mp4"); len(got) != 1 || got[0] != "" {
		t.Errorf("other host got the caller's Authorization %q", got)
	}
	if req.Header.Get("Authorization") != "Bearer "+secret {
		t.Error("the caller's request was modified")
	}

	// Same listener, other name: no DNS, so it is another host.
	other := strings.Replace(apiSrv.URL, "127.0.0.1", "localhost", 1)
	resp, err = hc.Get(other + "/by-name")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := api.auth("/by-name"); len(got) != 1 || got[0] != "" {
		t.Errorf("localhost (API is 127.0.0.1) got Authorization %q, want none", got)
	}
}

// roundTripFunc records what the wrapped transport would send.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestTokenTransportHostRule(t *testing.T) {
	tests := []struct {
		base, url string
		wantToken bool
	}{
		{"https://model-api.runcomfy.net", "https://model-api.runcomfy.net/v1/x", true},
		{"https://model-api.runcomfy.net", "https://MODEL-API.runcomfy.net/v1/x", true},
		{"https://Model-API.runcomfy.net/", "https://model-api.runcomfy.net/v1/x", true},
		{"http://127.0.0.1:8189", "http://127.0.0.1:8189/v1/x", true},
		{"https://model-api.runcomfy.net", "https://model-api.runcomfy.net:443/v1/x", false}, // port as written
		{"https://model-api.runcomfy.net", "https://files.runcomfy.net/a.mp4", false},
		{"https://model-api.runcomfy.net", "https://model-api.runcomfy.net.evil.com/", false},
		{"https://model-api.runcomfy.net", "http://model-api.runcomfy.net/v1/x", false}, // no token in clear text
		{"http://127.0.0.1:8189", "http://localhost:8189/files/a.mp4", false},
		{"http://127.0.0.1:8189", "http://127.0.0.1:8190/", false},
	}
	for _, tt := range tests {
		var sent string
		hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			sent = r.Header.Get("Authorization")
			return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
		})}
		c := newTestClient(t, Options{BaseURL: tt.base, Token: secret, HTTPClient: hc})
		req, _ := http.NewRequest("GET", tt.url, nil)
		req.Header.Set("Authorization", "Basic caller")
		before := req.Header.Clone()
		if _, err := c.HTTPClient().Transport.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
		want := ""
		if tt.wantToken {
			want = "Bearer " + secret
		}
		if sent != want {
			t.Errorf("base %s, url %s: sent Authorization %q, want %q", tt.base, tt.url, sent, want)
		}
		if req.Header.Get("Authorization") != before.Get("Authorization") {
			t.Errorf("base %s, url %s: RoundTrip modified the caller's request", tt.base, tt.url)
		}
	}
}

func TestHTTPClientKeepsCallerSettings(t *testing.T) {
	jarless := &http.Client{Timeout: 42, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	c := newTestClient(t, Options{HTTPClient: jarless, Token: secret})
	hc := c.HTTPClient()
	if hc == jarless || hc.Timeout != 42 || hc.CheckRedirect == nil {
		t.Errorf("wrapped client lost the caller's settings or is the caller's own: %+v", hc)
	}
	if jarless.Transport != nil {
		t.Error("the caller's client was modified")
	}
	if _, ok := hc.Transport.(*tokenTransport); !ok {
		t.Errorf("transport is %T, want the token transport", hc.Transport)
	}
}
