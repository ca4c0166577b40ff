package runcomfytest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
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

// fetchInputs GETs every http(s) URL in a field whose name holds "url"
// (or in a list there), as a model fetches its inputs, and returns the hex
// sha256 of each answer by field (or field[i]). A URL that does not answer
// 200 is an error naming the field.
func fetchInputs(ctx context.Context, canonical json.RawMessage) (map[string]string, error) {
	var in map[string]any
	if err := json.Unmarshal(canonical, &in); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	sums := map[string]string{}
	fetch := func(where, u string) error {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return nil
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("%s: could not fetch: %w", where, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: could not fetch: HTTP %d", where, resp.StatusCode)
		}
		h := sha256.New()
		if _, err := io.Copy(h, resp.Body); err != nil {
			return fmt.Errorf("%s: could not fetch: %w", where, err)
		}
		sums[where] = hex.EncodeToString(h.Sum(nil))
		return nil
	}
	for field, v := range in {
		if !strings.Contains(strings.ToLower(field), "url") {
			continue
		}
		switch x := v.(type) {
		case string:
			if err := fetch(field, x); err != nil {
				return nil, err
			}
		case []any:
			for i, e := range x {
				if s, ok := e.(string); ok {
					if err := fetch(field+"["+strconv.Itoa(i)+"]", s); err != nil {
						return nil, err
					}
				}
			}
		}
	}
	return sums, nil
}
