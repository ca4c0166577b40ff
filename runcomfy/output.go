package runcomfy

import (
	"bytes"
	"encoding/json"
)

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
