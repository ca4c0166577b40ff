package runcomfy

import (
	"net/http"
	"strings"
)

// tokenTransport adds the bearer token to requests for the API host and to
// no other. http.Client calls it once per redirect hop, so the check also
// holds across redirects: a hop to another host goes out without the token.
type tokenTransport struct {
	next   http.RoundTripper
	scheme string // the API's scheme: no token on an https→http downgrade
	host   string // the API's host and port, as written in the base URL
	token  string
}

func (t *tokenTransport) forAPI(req *http.Request) bool {
	// Compare what was written, without DNS: "localhost" and "127.0.0.1"
	// are different hosts here, and so are "h" and "h:443".
	return strings.EqualFold(req.URL.Host, t.host) && strings.EqualFold(req.URL.Scheme, t.scheme)
}

func (t *tokenTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	api := t.forAPI(req)
	switch {
	case api && t.token != "":
		req = withHeader(req, "Bearer "+t.token)
	case !api && req.Header.Get("Authorization") != "":
		// A caller's header must not leak either, e.g. one copied by
		// http.Client onto a redirect.
		req = withHeader(req, "")
	}
	return t.next.RoundTrip(req)
}

// withHeader returns a copy of req whose Authorization is auth (removed when
// empty). A RoundTripper must not modify the request it was given.
func withHeader(req *http.Request, auth string) *http.Request {
	r := req.Clone(req.Context()) // Clone deep-copies the header map
	if auth == "" {
		r.Header.Del("Authorization")
	} else {
		r.Header.Set("Authorization", auth)
	}
	return r
}
