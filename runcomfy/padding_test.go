package runcomfy_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"comfybatch/runcomfy"
	"comfybatch/runcomfy/runcomfytest"
)

// TestPaddedResultsHoldLittle: result answers of the simulated API padded
// with megabytes the client never reads are read without holding the
// padding: the body budget's peak stays one probe, while each output, an
// inline data: URL, comes whole. An output of megabytes beside the padding
// is held whole, and counted.
func TestPaddedResultsHoldLittle(t *testing.T) {
	const pad = 4 << 20
	cfg := runcomfytest.Config{ResultBodyPad: pad, Answers: runcomfytest.Answers{OutputKind: "data"}}
	srv := runcomfytest.New(cfg)
	base := srv.Start()
	defer srv.Close()
	c, err := runcomfy.New(runcomfy.Options{BaseURL: base})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 3 {
		sub, err := c.Submit(ctx, "m/x", map[string]any{"seed": i}, runcomfy.SubmitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		id := string(sub.RequestID)
		res, err := c.Result(ctx, id)
		if err != nil || res.Status != "completed" || res.FinishedAt == "" {
			t.Fatalf("result of %s: %+v, %v", id, res, err)
		}
		if got, want := inlineVideo(t, res.Output), runcomfytest.ExpectedOutput(cfg, id, 0); !bytes.Equal(got, want) {
			t.Errorf("output of %s: %d bytes, want the %d of the data: URL", id, len(got), len(want))
		}
	}
	if got := srv.Stats().Result; got != 3 {
		t.Fatalf("%d result calls, want 3", got)
	}
	if peak := runcomfy.BodiesPeak(c); peak > runcomfy.ProbeSize {
		t.Errorf("answers padded with %d bytes took %d bytes of the body budget at the most, want at most %d", pad, peak, runcomfy.ProbeSize)
	}

	// An output of 8 MiB beside the padding: the output is what the
	// client reads, and it is counted.
	const size = 8 << 20
	video := bytes.Repeat([]byte{0xAB}, size*3/4)
	body := `{"padding":"` + strings.Repeat("x", pad) + `","status":"completed","output":{"video":"data:video/mp4;base64,` +
		base64.StdEncoding.EncodeToString(video) + `"}}`
	for _, chunked := range []bool{false, true} {
		big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !chunked {
				w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			}
			io.WriteString(w, body)
		}))
		defer big.Close()
		c, err := runcomfy.New(runcomfy.Options{BaseURL: big.URL})
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Result(ctx, "r1")
		if err != nil {
			t.Fatal(err)
		}
		if got := inlineVideo(t, res.Output); !bytes.Equal(got, video) {
			t.Errorf("chunked %v: output of %d bytes, want %d", chunked, len(got), len(video))
		}
		if peak := runcomfy.BodiesPeak(c); peak < size {
			t.Errorf("chunked %v: an output of %d bytes took %d bytes of the body budget", chunked, size, peak)
		}
	}
}

// inlineVideo decodes {"video":"data:video/mp4;base64,..."}.
func inlineVideo(t *testing.T, output json.RawMessage) []byte {
	t.Helper()
	var out struct{ Video string }
	if err := json.Unmarshal(output, &out); err != nil {
		t.Fatalf("output %.100q: %v", output, err)
	}
	b64, ok := strings.CutPrefix(out.Video, "data:video/mp4;base64,")
	if !ok {
		t.Fatalf("output %.100q is not a data: URL", output)
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
