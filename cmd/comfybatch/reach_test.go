package main

import (
	"net"
	"strings"
	"testing"
)

// TestUnreachableAPI: a run against a port nothing listens on ends with
// exit 2 and a message that names the API base and what to check, instead
// of waiting as if on a slow queue; every job is left pending (nothing was
// sent), none unknown. It holds with --quiet too, where the first call is
// a submit rather than a price lookup.
func TestUnreachableAPI(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + l.Addr().String()
	l.Close()
	for _, extra := range [][]string{nil, {"--quiet"}} {
		manifest, _ := writeManifest(t, t.TempDir(), 3)
		r := runBinary(t, tokenEnv(base), append([]string{"run", manifest}, extra...)...)
		if r.code != exitUsage {
			t.Fatalf("%v: exit %d, want %d:\n%s", extra, r.code, exitUsage, r.stderr)
		}
		for _, want := range []string{"cannot reach the RunComfy API at " + base, "connection refused", "check --api-base"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("%v: stderr lacks %q:\n%s", extra, want, r.stderr)
			}
		}
		if s := status(t, manifest); s.Counts["pending"] != 3 {
			t.Errorf("%v: counts %v, want 3 pending", extra, s.Counts)
		}
	}
}
