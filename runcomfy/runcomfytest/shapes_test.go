package runcomfytest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hajimehoshi/go-mp3"
)

// These tests speak to the server with a plain http.Client and compare the
// bytes on the wire, so that they hold whatever comfybatch's client makes
// of them.

// wireModel is the model every test submits to.
const wireModel = "wan-ai/wan-2-6/flash/image-to-video"

// wireClock is a server clock moved by hand. (The tests here depend on no
// other test file, so that they keep building while those change.)
type wireClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *wireClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *wireClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// wireAPI is a started server and what to send it.
type wireAPI struct {
	t     *testing.T
	s     *Server
	base  string // the API, http://127.0.0.1:PORT
	files string // the files host, http://localhost:PORT
	auth  string // Authorization header for every request; "" for none
	hc    *http.Client
}

func newWireAPI(t *testing.T, cfg Config) *wireAPI {
	t.Helper()
	s := New(cfg)
	base := s.Start()
	t.Cleanup(s.Close)
	return &wireAPI{
		t: t, s: s, base: base,
		files: "http://" + filesHost(strings.TrimPrefix(base, "http://")),
		hc:    &http.Client{Timeout: 10 * time.Second},
	}
}

// do sends a request to path (on the API unless it is a full URL) and
// returns the status code and the body.
func (a *wireAPI) do(method, path, body string) (int, string) {
	a.t.Helper()
	resp := a.doResp(method, path, body)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func (a *wireAPI) doResp(method, path, body string) *http.Response {
	a.t.Helper()
	if !strings.HasPrefix(path, "http") {
		path = a.base + path
	}
	req, err := http.NewRequest(method, path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	if a.auth != "" {
		req.Header.Set("Authorization", a.auth)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	return resp
}

func (a *wireAPI) submit(input string) (int, string) {
	a.t.Helper()
	return a.do("POST", "/v1/models/"+wireModel, input)
}

// submitID submits input, which must succeed, and returns the request id
// as written (digits for a numeric id).
func (a *wireAPI) submitID(input string) string {
	a.t.Helper()
	code, body := a.submit(input)
	id := strings.Trim(field(a.t, body, "request_id"), `"`)
	if code != 200 || id == "" {
		a.t.Fatalf("submit: %d %s", code, body)
	}
	return id
}

// expand fills {id}, {api}, {files} and {model} into a wanted body.
func (a *wireAPI) expand(want, id string) string {
	return strings.NewReplacer("{id}", id, "{api}", a.base, "{files}", a.files, "{model}", wireModel).Replace(want)
}

// field returns one top-level field of a JSON object, as raw text; "" when
// absent.
func field(t *testing.T, body, name string) string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	return string(m[name])
}

var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func TestZeroAnswersAreToday(t *testing.T) {
	clk := &wireClock{t: epoch}
	a := newWireAPI(t, Config{QueueTime: 10 * time.Second, CostUSD: 0.25, Now: clk.Now})
	id := a.submitID(`{"prompt":"a"}`)
	other := a.submitID(`{"prompt":"b"}`)
	_, sub := a.submit(`{"prompt":"c"}`)

	tests := []struct {
		name, method, path, body string
		code                     int
		want                     string
	}{
		{"queued status", "GET", "/v1/requests/{id}/status", "", 200, `{"request_id":"{id}","status":"in_queue","queue_position":1}`},
		{"queued result", "GET", "/v1/requests/{id}/result", "", 200, `{"created_at":"2025-01-01T00:00:00Z","model_id":"{model}","request_id":"{id}","status":"in_queue"}`},
		{"cancel queued", "POST", "/v1/requests/" + other + "/cancel", "", 200, `{"request_id":"` + other + `","status":"cancelled","outcome":"cancelled"}`},
		{"unknown", "GET", "/v1/requests/nope/status", "", 404, `{"error_code":404001,"error_message":"request not found or expired"}`},
		{"model", "GET", "/v1/models/{model}", "", 200, `{"model_id":"{model}","display_name":"{model}","base_price_usd":0.05,"price_unit":"second"}`},
		{"bad input", "POST", "/v1/models/{model}", "null", 422, `{"error_message":"input: want a JSON object, got null"}`},
	}
	for _, tt := range tests {
		code, got := a.do(tt.method, a.expand(tt.path, id), tt.body)
		if want := a.expand(tt.want, id); code != tt.code || got != want {
			t.Errorf("%s: %d %s\nwant %d %s", tt.name, code, got, tt.code, want)
		}
	}

	clk.Advance(10 * time.Second)
	for _, tt := range []struct{ method, path, want string }{
		{"GET", "/v1/requests/{id}/status", `{"request_id":"{id}","status":"completed"}`},
		{"GET", "/v1/requests/{id}/result?include_cost=true", `{"cost":0.25,"created_at":"2025-01-01T00:00:00Z","error":null,` +
			`"finished_at":"2025-01-01T00:00:10Z","model_id":"{model}","output":{"video":"{files}/files/{id}/0.mp4?v=1"},` +
			`"request_id":"{id}","status":"completed"}`},
		{"POST", "/v1/requests/{id}/cancel", `{"request_id":"{id}","status":"completed","outcome":"not_cancellable"}`},
	} {
		code, got := a.do(tt.method, a.expand(tt.path, id), "")
		if want := a.expand(tt.want, id); code != 200 || got != want {
			t.Errorf("%s: %d %s\nwant %s", tt.path, code, got, want)
		}
	}
	third := field(t, sub, "request_id")
	wantSub := a.expand(`{"request_id":`+third+`,"status_url":"{api}/v1/requests/{id}/status",`+
		`"result_url":"{api}/v1/requests/{id}/result","cancel_url":"{api}/v1/requests/{id}/cancel"}`, strings.Trim(third, `"`))
	if sub != wantSub {
		t.Errorf("submit answer %s\nwant %s", sub, wantSub)
	}
}

func TestSubmitCreatedButUnanswered(t *testing.T) {
	tests := []struct {
		name    string
		answers Answers
		code    int
		bodies  []string // for successive submits
	}{
		{"gateway 503", Answers{SubmitCreated5xx: 1}, 503, []string{`{"error_message":"Service Unavailable"}`}},
		{"error code", Answers{SubmitCreatedErrorCode: 1}, 200, []string{`{"error_code":500001,"error_message":"internal error"}`}},
		{"empty body", Answers{SubmitEmptyBody: 1}, 200, []string{`{}`, `[]`, `{}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newWireAPI(t, Config{Answers: tt.answers})
			for i, want := range tt.bodies {
				if code, got := a.submit(`{"prompt":"same"}`); code != tt.code || got != want {
					t.Errorf("submit %d: %d %s, want %d %s", i, code, got, tt.code, want)
				}
			}
			n := int64(len(tt.bodies))
			if st := a.s.Stats(); st.Submits != n || st.Created != n || st.CreatedUnanswered != n || st.Refused != 0 {
				t.Errorf("stats %+v", st)
			}
			if len(a.s.Jobs()) != len(tt.bodies) || a.s.Duplicates() != len(tt.bodies)-1 {
				t.Errorf("jobs %d, duplicates %d", len(a.s.Jobs()), a.s.Duplicates())
			}
		})
	}
}

func TestSubmitSharesAddUp(t *testing.T) {
	// One draw per job: a quarter each, and the rest answered normally.
	a := newWireAPI(t, Config{Seed: 3, Answers: Answers{SubmitCreated5xx: 0.25, SubmitCreatedErrorCode: 0.25, SubmitEmptyBody: 0.25}})
	seen := map[string]int{}
	for i := range 400 {
		code, body := a.submit(`{"seed":` + strconv.Itoa(i) + `}`)
		switch {
		case code == 503:
			seen["503"]++
		case strings.Contains(body, "500001"):
			seen["code"]++
		case body == "{}" || body == "[]":
			seen["empty"]++
		case strings.Contains(body, `"request_id"`):
			seen["ok"]++
		default:
			t.Fatalf("unexpected %d %s", code, body)
		}
	}
	for k, n := range seen {
		if n < 60 || n > 140 {
			t.Errorf("%s: %d of 400, want about 100 (%v)", k, n, seen)
		}
	}
	if st := a.s.Stats(); st.Created != 400 || st.CreatedUnanswered != int64(400-seen["ok"]) {
		t.Errorf("stats %+v, seen %v", st, seen)
	}
}

func TestNumericRequestIDs(t *testing.T) {
	a := newWireAPI(t, Config{Answers: Answers{NumericRequestIDs: true}})
	code, sub := a.submit(`{"prompt":"a"}`)
	want := a.expand(`{"request_id":1000001,"status_url":"{api}/v1/requests/1000001/status",`+
		`"result_url":"{api}/v1/requests/1000001/result","cancel_url":"{api}/v1/requests/1000001/cancel"}`, "")
	if code != 200 || sub != want {
		t.Fatalf("submit: %d %s\nwant %s", code, sub, want)
	}
	if id := a.submitID(`{"prompt":"b"}`); id != "1000002" {
		t.Errorf("second id %s, want 1000002", id)
	}
	for _, path := range []string{"/status", "/result"} {
		if code, body := a.do("GET", "/v1/requests/1000001"+path, ""); code != 200 || field(t, body, "request_id") != `"1000001"` {
			t.Errorf("%s: %d %s", path, code, body)
		}
	}
	_, res := a.do("GET", "/v1/requests/1000001/result", "")
	url := strings.Trim(field(t, field(t, res, "output"), "video"), `"`)
	if _, body := a.do("GET", url, ""); body != string(OutputBytes("1000001", 0)) {
		t.Errorf("file at %s differs", url)
	}
	if code, body := a.do("POST", "/v1/requests/1000002/cancel", ""); code != 200 || field(t, body, "request_id") != `"1000002"` {
		t.Errorf("cancel: %d %s", code, body)
	}
	if jobs := a.s.Jobs(); len(jobs) != 2 || jobs[0].RequestID != "1000001" {
		t.Errorf("Jobs() = %+v", jobs)
	}
}

func TestSubmitRefuse(t *testing.T) {
	const detail = `{"detail":[{"loc":["body","prompt"],"msg":"field required%s","type":"value_error.missing"},` +
		`{"loc":["body","seed"],"msg":"ensure this value is less than 2147483648%s","type":"value_error.number.not_le"}]}`
	tests := []struct {
		status int
		echo   bool
		want   string
	}{
		{401, false, `{"error_message":"unauthorized"}`},
		{402, false, `{"error_message":"insufficient balance"}`},
		{403, false, `{"error_message":"forbidden"}`},
		{418, false, `{"error_message":"I'm a teapot"}`},
		{503, false, `{"error_message":"Service Unavailable"}`},
		{422, false, strings.ReplaceAll(detail, "%s", "")},
		{422, true, strings.ReplaceAll(detail, "%s", " from Bearer tok")},
		{403, true, `{"error_message":"forbidden from Bearer tok"}`},
	}
	for _, tt := range tests {
		a := newWireAPI(t, Config{Token: "tok", Answers: Answers{SubmitRefuse: tt.status, EchoToken: tt.echo}})
		a.auth = "Bearer tok"
		if code, got := a.submit(`{"prompt":"a"}`); code != tt.status || got != tt.want {
			t.Errorf("%d (echo %v): %d %s\nwant %s", tt.status, tt.echo, code, got, tt.want)
		}
		if st := a.s.Stats(); st.Created != 0 || st.Refused != 1 || len(a.s.Jobs()) != 0 {
			t.Errorf("%d: stats %+v, want no job", tt.status, st)
		}
	}
}

func TestEchoToken(t *testing.T) {
	const secret = "Bearer s3cret-token"
	// Each case makes the server write one error body.
	tests := []struct {
		name string
		cfg  func(*Config)
		call func(a *wireAPI) (int, string)
		code int
	}{
		{"bad token", func(c *Config) { c.Token = "other" }, submitA, 401},
		{"rate limited", func(c *Config) { c.Rate429 = 1 }, statusOf("x"), 429},
		{"unknown request", nil, statusOf("nope"), 404},
		{"unknown cancel", nil, func(a *wireAPI) (int, string) { return a.do("POST", "/v1/requests/nope/cancel", "") }, 404},
		{"bad input", nil, func(a *wireAPI) (int, string) { return a.submit(`[1]`) }, 422},
		{"no balance", func(c *Config) { c.BalanceJobs = 1 }, func(a *wireAPI) (int, string) {
			a.submitID(`{"prompt":"first"}`)
			return submitA(a)
		}, 400},
		{"refused", func(c *Config) { c.Answers.SubmitRefuse = 402 }, submitA, 402},
		{"created then 503", func(c *Config) { c.Answers.SubmitCreated5xx = 1 }, submitA, 503},
		{"created then error code", func(c *Config) { c.Answers.SubmitCreatedErrorCode = 1 }, submitA, 200},
		{"not found yet", func(c *Config) { c.Answers.NotFoundFor = time.Hour }, func(a *wireAPI) (int, string) {
			return statusOf(a.submitID(`{"prompt":"a"}`))(a)
		}, 404},
		{"file not found", nil, func(a *wireAPI) (int, string) { return a.do("GET", a.files+"/files/nope/0.mp4", "") }, 404},
		{"500", func(c *Config) { c.Rate5xx, c.Seed = 1, 1 }, statusOfCode(500), 500},
		{"502 html", func(c *Config) { c.Rate5xx, c.Seed = 1, 1 }, statusOfCode(502), 502},
		{"503", func(c *Config) { c.Rate5xx, c.Seed = 1, 1 }, statusOfCode(503), 503},
	}
	for _, tt := range tests {
		for _, echo := range []bool{false, true} {
			cfg := Config{Token: "s3cret-token", Answers: Answers{EchoToken: echo}}
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			a := newWireAPI(t, cfg)
			a.auth = secret
			code, body := tt.call(a)
			if code != tt.code || strings.Contains(body, secret) != echo {
				t.Errorf("%s (EchoToken %v): %d %s; want %d, token in the body: %v", tt.name, echo, code, body, tt.code, echo)
			}
		}
	}
}

func submitA(a *wireAPI) (int, string) { return a.submit(`{"prompt":"a"}`) }

func statusOf(id string) func(*wireAPI) (int, string) {
	return func(a *wireAPI) (int, string) { return a.do("GET", "/v1/requests/"+id+"/status", "") }
}

// statusOfCode polls until the random 5xx drawn is code.
func statusOfCode(code int) func(*wireAPI) (int, string) {
	return func(a *wireAPI) (int, string) {
		for range 200 {
			if got, body := statusOf("x")(a); got == code {
				return got, body
			}
		}
		a.t.Fatalf("no %d in 200 calls", code)
		return 0, ""
	}
}

func TestStatusNames(t *testing.T) {
	// Statuses seen at each phase: queued, running, finished, and a job
	// cancelled in the queue (answer to the cancel, then later polls).
	tests := []struct {
		name    string
		answers Answers
		want    [5]string
	}{
		{"as is", Answers{}, [5]string{"in_queue", "in_progress", "completed", "cancelled", "cancelled"}},
		{"upper", Answers{StatusCase: "upper"}, [5]string{"IN_QUEUE", "IN_PROGRESS", "COMPLETED", "CANCELLED", "CANCELLED"}},
		{"title", Answers{StatusCase: "title"}, [5]string{"In_queue", "In_progress", "Completed", "Cancelled", "Cancelled"}},
		{"succeeded", Answers{Succeeded: true}, [5]string{"in_queue", "in_progress", "succeeded", "cancelled", "cancelled"}},
		{"canceled", Answers{Canceled: true}, [5]string{"in_queue", "in_progress", "completed", "canceled", "canceled"}},
		{"unknown", Answers{UnknownStatus: "warming_up"}, [5]string{"in_queue", "warming_up", "completed", "cancelled", "cancelled"}},
		{"all", Answers{StatusCase: "title", Succeeded: true, Canceled: true, UnknownStatus: "WARMING_UP"},
			[5]string{"In_queue", "Warming_up", "Succeeded", "Canceled", "Canceled"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &wireClock{t: epoch}
			a := newWireAPI(t, Config{QueueTime: 10 * time.Second, RunTime: 10 * time.Second, Now: clk.Now, Answers: tt.answers})
			job, gone := a.submitID(`{"prompt":"a"}`), a.submitID(`{"prompt":"b"}`)
			status := func(id, path string) string {
				t.Helper()
				method := "GET"
				if path == "cancel" {
					method = "POST"
				}
				code, body := a.do(method, "/v1/requests/"+id+"/"+path, "")
				if code != 200 {
					t.Fatalf("%s: %d %s", path, code, body)
				}
				return strings.Trim(field(t, body, "status"), `"`)
			}
			var got [5]string
			got[0] = status(job, "status")
			got[3] = status(gone, "cancel")
			clk.Advance(10 * time.Second)
			got[1] = status(job, "status")
			if r := status(job, "result"); r != got[1] {
				t.Errorf("result says %q, status %q", r, got[1])
			}
			clk.Advance(10 * time.Second)
			got[2] = status(job, "status")
			got[4] = status(gone, "status")
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			// Jobs() stays canonical whatever the wire says.
			if jobs := a.s.Jobs(); jobs[0].Status != "completed" || jobs[1].Status != "cancelled" {
				t.Errorf("Jobs() = %+v", jobs)
			}
		})
	}
}

func TestNotFoundFor(t *testing.T) {
	clk := &wireClock{t: epoch}
	a := newWireAPI(t, Config{Now: clk.Now, Answers: Answers{NotFoundFor: 5 * time.Second}})
	id := a.submitID(`{"prompt":"a"}`)
	const hidden = `{"error_code":404001,"error_message":"request not found"}`
	check := func(when string, wantCode int) {
		t.Helper()
		for _, path := range []string{"status", "result"} {
			code, body := a.do("GET", "/v1/requests/"+id+"/"+path, "")
			if code != wantCode || (wantCode == 404) != (body == hidden) {
				t.Errorf("%s, %s: %d %s, want %d", when, path, code, body, wantCode)
			}
		}
	}
	check("at once", 404)
	clk.Advance(5*time.Second - time.Nanosecond)
	check("just before", 404)
	clk.Advance(time.Nanosecond)
	check("at 5s", 200)
	if st := a.s.Stats(); st.NotFound != 4 || st.Created != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestResultQueuePosition(t *testing.T) {
	for _, on := range []bool{false, true} {
		a := newWireAPI(t, Config{QueueTime: time.Hour, Answers: Answers{ResultQueuePosition: on}})
		a.submitID(`{"prompt":"a"}`)
		id := a.submitID(`{"prompt":"b"}`)
		_, body := a.do("GET", "/v1/requests/"+id+"/result", "")
		want := ""
		if on {
			want = "2"
		}
		if got := field(t, body, "queue_position"); got != want {
			t.Errorf("ResultQueuePosition %v: queue_position %q, want %q in %s", on, got, want, body)
		}
	}
}

func TestOutputKinds(t *testing.T) {
	tests := []struct {
		kind    string
		outputs int
		want    string // the output field; {data0}, {data1} stand for data URIs
		ctype   string // of the files; "" when there are none to fetch
	}{
		{"", 1, `{"video":"{files}/files/{id}/0.mp4?v=1"}`, "video/mp4"},
		{"video", 2, `{"videos":["{files}/files/{id}/0.mp4?v=1","{files}/files/{id}/1.mp4?v=1"]}`, "video/mp4"},
		{"videos", 1, `{"videos":["{files}/files/{id}/0.mp4?v=1"]}`, "video/mp4"},
		{"image", 1, `{"image":"{files}/files/{id}/0.png?v=1"}`, "image/png"},
		{"images", 2, `{"images":["{files}/files/{id}/0.png?v=1","{files}/files/{id}/1.png?v=1"]}`, "image/png"},
		{"audio", 1, `{"audio":"{files}/files/{id}/0.mp3?v=1"}`, "audio/mpeg"},
		{"audios", 1, `{"audios":["{files}/files/{id}/0.mp3?v=1"]}`, "audio/mpeg"},
		{"nested", 2, `{"data":{"files":[{"url":"{files}/files/{id}/0.mp4?v=1"},{"url":"{files}/files/{id}/1.mp4?v=1"}]},"seed":7}`, "video/mp4"},
		{"data", 1, `{"video":"data:video/mp4;base64,{data0}"}`, ""},
		{"data", 2, `{"videos":["data:video/mp4;base64,{data0}","data:video/mp4;base64,{data1}"]}`, ""},
		{"text", 3, `{"text":"caption for {id}"}`, ""},
	}
	for _, tt := range tests {
		cfg := Config{OutputsPerJob: tt.outputs, Answers: Answers{OutputKind: tt.kind}}
		a := newWireAPI(t, cfg)
		id := a.submitID(`{"prompt":"a"}`)
		_, res := a.do("GET", "/v1/requests/"+id+"/result", "")
		want := strings.NewReplacer(
			"{data0}", base64.StdEncoding.EncodeToString(ExpectedOutput(cfg, id, 0)),
			"{data1}", base64.StdEncoding.EncodeToString(ExpectedOutput(cfg, id, 1)),
		).Replace(a.expand(tt.want, id))
		if got := field(t, res, "output"); got != want {
			t.Errorf("%q × %d: output %s\nwant %s", tt.kind, tt.outputs, got, want)
			continue
		}
		if tt.kind == "text" && (string(ExpectedOutput(cfg, id, 0)) != OutputText(id) || ExpectedOutput(cfg, id, 1) != nil) {
			t.Errorf("text: ExpectedOutput does not match the single text output")
		}
		if tt.ctype == "" {
			continue // nothing to fetch
		}
		for n := range tt.outputs {
			checkDownload(t, a, id, n, tt.ctype, ExpectedOutput(cfg, id, n))
		}
	}
}

// checkDownload fetches output n of job id by the URL the result gave and
// compares it to want.
func checkDownload(t *testing.T, a *wireAPI, id string, n int, ctype string, want []byte) {
	t.Helper()
	var urls []string
	_, res := a.do("GET", "/v1/requests/"+id+"/result", "")
	for _, part := range strings.Split(field(t, res, "output"), `"`) {
		if strings.HasPrefix(part, "http") {
			urls = append(urls, part)
		}
	}
	resp := a.doResp("GET", urls[n], "")
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != ctype || !bytes.Equal(body, want) || len(want) == 0 {
		t.Errorf("%s: %s %q, %d bytes (%v); want %s, the %d expected bytes",
			urls[n], resp.Status, resp.Header.Get("Content-Type"), len(body), err, ctype, len(want))
	}
}

func TestMediaBytesAreRealFiles(t *testing.T) {
	img := ImageBytes("r1", 0)
	if c, err := png.DecodeConfig(bytes.NewReader(img)); err != nil || c.Width != 16 {
		t.Errorf("PNG: %+v, %v", c, err)
	}
	d, err := mp3.NewDecoder(bytes.NewReader(AudioBytes("r1", 0)))
	if err != nil || d.SampleRate() != 44100 || d.Length() <= 0 {
		t.Fatalf("MP3: %v", err)
	}
	if _, err := io.Copy(io.Discard, d); err != nil {
		t.Errorf("MP3 decode: %v", err)
	}
	for name, f := range map[string]func(string, int) []byte{"image": ImageBytes, "audio": AudioBytes} {
		if !bytes.Equal(f("r1", 0), f("r1", 0)) || bytes.Equal(f("r1", 0), f("r1", 1)) || bytes.Equal(f("r1", 0), f("r2", 0)) {
			t.Errorf("%s: want bytes stable and differing by request and n", name)
		}
	}
	if ExpectedOutput(Config{}, "r1", 1) != nil || !bytes.Equal(ExpectedOutput(Config{}, "r1", 0), OutputBytes("r1", 0)) {
		t.Error("ExpectedOutput of the zero Config: want OutputBytes for output 0 only")
	}
}

func TestJobKeepsItsOutputKind(t *testing.T) {
	a := newWireAPI(t, Config{Answers: Answers{OutputKind: "image"}})
	id := a.submitID(`{"prompt":"a"}`)
	a.s.Update(func(c *Config) { c.Answers.OutputKind = "audio" })
	checkDownload(t, a, id, 0, "image/png", ImageBytes(id, 0))
}

func TestCostAs(t *testing.T) {
	tests := []struct{ as, want string }{
		{"", "0.25"}, {"number", "0.25"}, {"string", `"0.25"`}, {"missing", ""},
		{"negative", "-1"}, {"garbage", `"about a quarter"`},
	}
	for _, tt := range tests {
		a := newWireAPI(t, Config{CostUSD: 0.25, Answers: Answers{CostAs: tt.as}})
		id := a.submitID(`{"prompt":"a"}`)
		_, res := a.do("GET", "/v1/requests/"+id+"/result?include_cost=true", "")
		if got := field(t, res, "cost"); got != tt.want {
			t.Errorf("CostAs %q: cost %s, want %s", tt.as, got, tt.want)
		}
		if _, res := a.do("GET", "/v1/requests/"+id+"/result", ""); field(t, res, "cost") != "" {
			t.Errorf("CostAs %q: cost without include_cost", tt.as)
		}
	}
}

func TestPriceAs(t *testing.T) {
	tests := []struct{ as, want string }{
		{"", `"base_price_usd":0.05,`}, {"number", `"base_price_usd":0.05,`}, {"string", `"base_price_usd":"0.05",`},
		{"zero", `"base_price_usd":0,`}, {"missing", ``},
	}
	for _, tt := range tests {
		a := newWireAPI(t, Config{PriceUnit: "image", Answers: Answers{PriceAs: tt.as}})
		want := a.expand(`{"model_id":"{model}","display_name":"{model}",`+tt.want+`"price_unit":"image"}`, "")
		if code, got := a.do("GET", "/v1/models/"+wireModel, ""); code != 200 || got != want {
			t.Errorf("PriceAs %q: %d %s\nwant %s", tt.as, code, got, want)
		}
	}
}

func TestCancelShapes(t *testing.T) {
	// The first job is queued, the second running (created 10s earlier).
	tests := []struct {
		shape, statusCase string
		queued, running   string
	}{
		{"", "", `{"request_id":"{id}","status":"cancelled","outcome":"cancelled"}`,
			`{"request_id":"{id}","status":"in_progress","outcome":"not_cancellable"}`},
		{"status-only", "", `{"status":"cancelled"}`, `{"status":"in_progress"}`},
		{"requested", "", `{"status":"cancelled","outcome":"cancellation_requested"}`,
			`{"status":"in_progress","outcome":"cancellation_requested"}`},
		{"empty", "", `{}`, `{}`},
		{"canceled", "", `{"request_id":"{id}","status":"canceled","outcome":"canceled"}`,
			`{"request_id":"{id}","status":"in_progress","outcome":"not_cancellable"}`},
		{"requested", "upper", `{"status":"CANCELLED","outcome":"cancellation_requested"}`,
			`{"status":"IN_PROGRESS","outcome":"cancellation_requested"}`},
		{"canceled", "title", `{"request_id":"{id}","status":"Canceled","outcome":"canceled"}`,
			`{"request_id":"{id}","status":"In_progress","outcome":"not_cancellable"}`},
	}
	for _, tt := range tests {
		clk := &wireClock{t: epoch}
		a := newWireAPI(t, Config{QueueTime: 10 * time.Second, RunTime: time.Minute, Now: clk.Now,
			Answers: Answers{CancelShape: tt.shape, StatusCase: tt.statusCase}})
		running := a.submitID(`{"prompt":"a"}`)
		clk.Advance(10 * time.Second)
		queued := a.submitID(`{"prompt":"b"}`)
		for _, c := range []struct{ id, want string }{{queued, tt.queued}, {running, tt.running}} {
			if code, got := a.do("POST", "/v1/requests/"+c.id+"/cancel", ""); code != 200 || got != a.expand(c.want, c.id) {
				t.Errorf("%q/%q: %d %s\nwant %s", tt.shape, tt.statusCase, code, got, a.expand(c.want, c.id))
			}
		}
		if jobs := a.s.Jobs(); jobs[0].Status != "in_progress" || jobs[1].Status != "cancelled" {
			t.Errorf("%q: Jobs() = %+v, want the queued job cancelled, the running one not", tt.shape, jobs)
		}
	}
}

func TestAnswersValidate(t *testing.T) {
	good := []Answers{{}, {OutputKind: "audios", CostAs: "garbage", PriceAs: "zero", CancelShape: "status-only",
		StatusCase: "upper", SubmitRefuse: 422, SubmitCreated5xx: 0.5, SubmitEmptyBody: 0.5}}
	bad := []Answers{{OutputKind: "vid"}, {StatusCase: "lower"}, {CostAs: "str"}, {PriceAs: "free"},
		{CancelShape: "status"}, {SubmitRefuse: 200}, {SubmitEmptyBody: 1.5}, {SubmitCreated5xx: 0.6, SubmitCreatedErrorCode: 0.6}}
	for _, a := range good {
		if err := a.Validate(); err != nil {
			t.Errorf("%+v: %v", a, err)
		}
	}
	for _, a := range bad {
		if err := a.Validate(); err == nil {
			t.Errorf("%+v: valid", a)
		}
	}
}
