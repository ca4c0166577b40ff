package runcomfytest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// inlineFiles decodes the data: URIs a submitted input carries in its
// top-level fields and their lists, as comfybatch sends local files. A
// malformed one is refused, as a model that reads it would. Each is
// replaced in the input kept by "data:TYPE;sha256=HEX", so the server
// keeps digests, not files; digests maps field (or field[i]) to the hex
// sha256 of the decoded bytes, for tests to compare with the file.
func inlineFiles(canonical json.RawMessage) (json.RawMessage, map[string]string, error) {
	if !bytes.Contains(canonical, []byte(`"data:`)) {
		return canonical, nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(canonical))
	dec.UseNumber()
	var in map[string]any
	if err := dec.Decode(&in); err != nil {
		return nil, nil, err
	}
	digests := map[string]string{}
	decode := func(where, s string) (string, error) {
		mt, sum, err := dataDigest(s)
		if err != nil {
			return "", fmt.Errorf("%s: %w", where, err)
		}
		digests[where] = sum
		return "data:" + mt + ";sha256=" + sum, nil
	}
	for field, v := range in {
		switch x := v.(type) {
		case string:
			if strings.HasPrefix(x, "data:") {
				d, err := decode(field, x)
				if err != nil {
					return nil, nil, err
				}
				in[field] = d
			}
		case []any:
			for i, e := range x {
				if s, ok := e.(string); ok && strings.HasPrefix(s, "data:") {
					d, err := decode(field+"["+strconv.Itoa(i)+"]", s)
					if err != nil {
						return nil, nil, err
					}
					x[i] = d
				}
			}
		}
	}
	out, err := json.Marshal(in)
	return out, digests, err
}

// dataDigest decodes a base64 data: URI and returns its media type and the
// hex sha256 of its bytes.
func dataDigest(uri string) (mediaType, sum string, err error) {
	meta, data, ok := strings.Cut(strings.TrimPrefix(uri, "data:"), ",")
	if !ok {
		return "", "", fmt.Errorf("malformed data URI: no comma")
	}
	mediaType, isB64 := strings.CutSuffix(meta, ";base64")
	if !isB64 {
		return "", "", fmt.Errorf("data URI is not base64")
	}
	if mediaType == "" || !strings.Contains(mediaType, "/") {
		return "", "", fmt.Errorf("data URI has no media type")
	}
	raw, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return "", "", fmt.Errorf("data URI does not decode: %v", err)
	}
	h := sha256.Sum256(raw)
	return mediaType, hex.EncodeToString(h[:]), nil
}
