package lifecycle

import (
	"bytes"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
)

// outputKeys are where models put their files (RunComfy's partner nodes read
// these six); their URLs come first so that output 1 is the model's main
// output, not some preview found earlier in the document.
var outputKeys = []string{"video", "videos", "image", "images", "audio", "audios"}

// OutputKind says how an output is turned into a file.
type OutputKind int

const (
	OutputURL  OutputKind = iota // an http(s) URL: downloaded
	OutputData                   // a data: URL: decoded
	OutputText                   // anything else: the text itself is the file
)

// KindOf tells what an output recorded by Outputs is.
func KindOf(out string) OutputKind {
	switch {
	case isHTTPURL(out):
		return OutputURL
	case isDataURL(out):
		return OutputData
	}
	return OutputText
}

// textKeys are where a model that answers in words puts them.
var textKeys = []string{"text", "texts", "caption", "captions", "transcript", "content"}

// Outputs returns what a finished job produced, from a result's output:
// every http(s) URL anywhere under it (those under the six media keys
// first, then the rest in document order); when it holds none, every data:
// URL; when it holds none of those either, the text a model answers with:
// a bare string output, or the strings under a text key (text, caption,
// transcript, content). Other strings — a prompt echoed back, a seed, an
// empty URL beside its content type — are metadata, not a result.
// Duplicates are dropped. It returns nil when the output holds none of
// these: the job finished with nothing to show for it.
func Outputs(output json.RawMessage) []string {
	type found struct{ top, s string }
	var all []found
	walkStrings(output, func(top, s string) {
		if strings.TrimSpace(s) != "" {
			all = append(all, found{top, s})
		}
	})
	pick := func(keep func(string) bool, keysFirst bool) []string {
		var out []string
		seen := make(map[string]bool)
		add := func(s string) {
			if keep(s) && !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
		if keysFirst {
			for _, k := range outputKeys {
				for _, f := range all {
					if f.top == k {
						add(f.s)
					}
				}
			}
		}
		for _, f := range all {
			add(f.s)
		}
		return out
	}
	if urls := pick(isHTTPURL, true); len(urls) > 0 {
		return urls
	}
	if data := pick(isDataURL, true); len(data) > 0 {
		return data
	}
	var text []string
	for _, f := range all {
		if f.top == "" || slices.Contains(textKeys, f.top) {
			text = append(text, f.s)
		}
	}
	if len(text) == 0 {
		return nil
	}
	return slices.Compact(text)
}

func isHTTPURL(s string) bool {
	if len(s) > 64<<10 {
		return false
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return false
	}
	return strings.EqualFold(u.Scheme, "http") || strings.EqualFold(u.Scheme, "https")
}

func isDataURL(s string) bool {
	return len(s) > 5 && strings.EqualFold(s[:5], "data:") && strings.Contains(s, ",")
}

// walkStrings calls fn for every string value in raw (object keys
// excluded), in document order, with the top-level object key it sits
// under ("" when raw is not an object). Invalid JSON stops the walk
// quietly: whatever was found before still counts.
func walkStrings(raw json.RawMessage, fn func(top, s string)) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	// One frame per open object or array; in an object, wantKey says
	// whether the next string token is a key or a value.
	type frame struct{ object, wantKey bool }
	var stack []frame
	top := ""
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].wantKey = true
		}
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{':
				stack = append(stack, frame{object: true, wantKey: true})
			case '[':
				stack = append(stack, frame{})
			default: // '}' or ']'
				stack = stack[:len(stack)-1]
				valueDone()
			}
			continue
		}
		if n := len(stack); n > 0 && stack[n-1].wantKey {
			stack[n-1].wantKey = false
			if n == 1 {
				top, _ = tok.(string)
			}
			continue
		}
		if s, ok := tok.(string); ok {
			fn(top, s)
		}
		valueDone()
	}
}
