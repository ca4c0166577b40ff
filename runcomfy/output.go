package runcomfy

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strings"
)

// outputKeys are where models put their files; their URLs come first so
// that <id>_1 is the model's main output, not some preview found earlier in
// the document.
var outputKeys = []string{"video", "videos", "image", "images"}

// OutputURLs returns the http(s) URLs in a result's output: those under the
// video, videos, image and images keys first, then any other http(s) string
// anywhere in output, in document order, without duplicates. It returns nil
// when output holds none (which makes a finished job a failure).
func OutputURLs(output json.RawMessage) []string {
	type found struct{ top, url string }
	var all []found
	walkStrings(output, func(top, s string) {
		if isHTTPURL(s) {
			all = append(all, found{top, s})
		}
	})
	var urls []string
	seen := make(map[string]bool)
	add := func(u string) {
		if !seen[u] {
			seen[u] = true
			urls = append(urls, u)
		}
	}
	for _, k := range outputKeys {
		for _, f := range all {
			if f.top == k {
				add(f.url)
			}
		}
	}
	for _, f := range all {
		add(f.url)
	}
	return urls
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return false
	}
	return strings.EqualFold(u.Scheme, "http") || strings.EqualFold(u.Scheme, "https")
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

// ErrorText renders a result's error field for people and the ledger: a
// JSON string as is, anything else as compact JSON, "" for null or absent.
func ErrorText(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if raw[0] == '"' && json.Unmarshal(raw, &s) == nil {
		return s
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw) // not JSON: still worth showing
	}
	return b.String()
}
