package runcomfytest

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestPortableIDs: two Servers with the same Seed stand for two processes
// of --fake. Their ids never meet, and the second answers for the first's
// requests — status, result, queue position and files — exactly as the
// first does, at every moment of the job's life.
func TestPortableIDs(t *testing.T) {
	clk := &wireClock{t: epoch.Add(123456789 * time.Nanosecond)} // not whole milliseconds
	cfg := Config{QueueTime: 10 * time.Second, RunTime: 20 * time.Second, Jitter: 0.5, CostUSD: 0.25,
		PortableIDs: true, Now: clk.Now, Answers: Answers{ResultQueuePosition: true}}
	first, second := newWireAPI(t, cfg), newWireAPI(t, cfg)
	var ids []string
	seen := map[string]bool{}
	for i := range 3 {
		for _, a := range []*wireAPI{first, second} {
			id := a.submitID(`{"prompt":"p` + string(rune('a'+i)) + `"}`)
			if seen[id] || len(id) > 128 || strings.Trim(id, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
				t.Fatalf("id %q: repeated, or not in RunComfy's [A-Za-z0-9_-]{1,128}", id)
			}
			seen[id] = true
			if a == first {
				ids = append(ids, id)
			}
		}
	}
	// Each answer of the first, minus what only the first can know (the
	// model, and the queue position: a request made elsewhere is put at
	// the front), against the second's.
	pos := regexp.MustCompile(`"queue_position":\d+`)
	same := func(when string) {
		t.Helper()
		for _, id := range ids {
			for _, path := range []string{"/status", "/result?include_cost=true"} {
				code1, want := first.do("GET", "/v1/requests/"+id+path, "")
				code2, got := second.do("GET", "/v1/requests/"+id+path, "")
				want = strings.ReplaceAll(want, `"model_id":"`+wireModel+`",`, "")
				want = strings.ReplaceAll(want, first.files, second.files)
				want = pos.ReplaceAllString(want, `"queue_position":1`)
				if code1 != 200 || code2 != code1 || got != want {
					t.Errorf("%s, %s%s:\nfirst  %d %s\nsecond %d %s", when, id, path, code1, want, code2, got)
				}
			}
		}
	}
	same("queued")
	if _, body := second.do("GET", "/v1/requests/"+ids[0]+"/result", ""); field(t, body, "queue_position") == "" {
		t.Errorf("a queued request of another Server has no queue position: %s", body)
	}
	clk.Advance(12 * time.Second)
	same("after 12s")
	clk.Advance(time.Minute)
	same("ended")
	for _, id := range ids {
		checkDownload(t, second, id, 0, "video/mp4", OutputBytes(id, 0))
	}
	if n := len(second.s.Jobs()); n != 3 {
		t.Errorf("Jobs() lists %d jobs; want the 3 the second Server created, not those it answered for", n)
	}
}

// TestPortableFate: what a job's id carries is how it ends, whatever the
// answering Server's own configuration says.
func TestPortableFate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // the result's status and output or error, in brief
	}{
		{"failed", Config{FailedStatusRate: 1}, `"failed" {"code":"generation_failed","message":"model crashed"}`},
		{"no output", Config{FailureRate: 1}, `"completed" {}`},
		{"images", Config{OutputsPerJob: 2, Answers: Answers{OutputKind: "images"}}, `"completed" {"images":["{files}/files/{id}/0.png?v=1","{files}/files/{id}/1.png?v=1"]}`},
		{"text", Config{Answers: Answers{OutputKind: "text"}}, `"completed" {"text":"caption for {id}"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.PortableIDs = true
			maker := newWireAPI(t, tt.cfg)
			id := maker.submitID(`{"prompt":"a"}`)
			other := newWireAPI(t, Config{PortableIDs: true})
			_, body := other.do("GET", "/v1/requests/"+id+"/result", "")
			out := field(t, body, "output")
			if out == "" {
				out = field(t, body, "error")
			}
			if got := field(t, body, "status") + " " + out; got != other.expand(tt.want, id) {
				t.Errorf("got  %s\nwant %s", got, other.expand(tt.want, id))
			}
		})
	}
	// An expiring first URL expires for the adopting Server too, until
	// the result is fetched again.
	id := newWireAPI(t, Config{ExpireRate: 1, PortableIDs: true}).submitID(`{"prompt":"a"}`)
	other := newWireAPI(t, Config{PortableIDs: true})
	_, body := other.do("GET", "/v1/requests/"+id+"/result", "")
	url := strings.Trim(field(t, field(t, body, "output"), "video"), `"`)
	if code, _ := other.do("GET", url, ""); code != 410 {
		t.Errorf("first URL of an expiring job: %d, want 410", code)
	}
	checkDownload(t, other, id, 0, "video/mp4", OutputBytes(id, 0))
}

// TestPortableIDsRefused: ids that are not a Server's — mistyped, made up,
// or portable ones asked of a Server without PortableIDs — are not found.
func TestPortableIDsRefused(t *testing.T) {
	id := newWireAPI(t, Config{PortableIDs: true}).submitID(`{"prompt":"a"}`)
	last := id[len(id)-1:]
	flip := map[string]string{"0": "1"}[last]
	if flip == "" {
		flip = "0"
	}
	parts := strings.Split(id, "-")
	parts[3] = "0" // another creation time, same check
	cases := map[string]string{
		"check changed":  id[:len(id)-1] + flip,
		"field changed":  strings.Join(parts, "-"),
		"cut short":      id[:len(id)-9],
		"not portable":   "3f2a9c1e-0000-4000-8000-000000000001",
		"other prefix":   "xx" + id[2:],
		"empty fields":   "fk----------",
		"negative field": strings.Replace(id, "-", "--", 1),
	}
	other := newWireAPI(t, Config{PortableIDs: true})
	for name, bad := range cases {
		if code, body := other.do("GET", "/v1/requests/"+bad+"/status", ""); code != 404 {
			t.Errorf("%s (%s): %d %s, want 404", name, bad, code, body)
		}
	}
	plain := newWireAPI(t, Config{})
	if code, _ := plain.do("GET", "/v1/requests/"+id+"/status", ""); code != 404 {
		t.Errorf("a Server without PortableIDs answered %d for another's id, want 404", code)
	}
}

func TestMatchesInput(t *testing.T) {
	a := newWireAPI(t, Config{PortableIDs: true})
	id := a.submitID(`{"prompt":"a","seed":7}`)
	tests := []struct {
		model, input string
		want         bool
	}{
		{wireModel, `{"seed":7,"prompt":"a"}`, true}, // any key order
		{wireModel, `{"seed":8,"prompt":"a"}`, false},
		{"other/model", `{"seed":7,"prompt":"a"}`, false},
	}
	for _, tt := range tests {
		if got, err := MatchesInput(id, tt.model, []byte(tt.input)); err != nil || got != tt.want {
			t.Errorf("MatchesInput(%s, %s) = %v, %v; want %v", tt.model, tt.input, got, err, tt.want)
		}
	}
	if _, err := MatchesInput("3f2a9c1e-0000-4000-8000-000000000001", wireModel, []byte(`{}`)); err == nil {
		t.Error("MatchesInput of a UUID: no error")
	}
}
