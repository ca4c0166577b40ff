package runcomfy

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"comfybatch/localfile"
)

// RunComfy's rules that a JSON Schema does not express (SPEC §4, from the
// model pages and the Model API quickstart).
const (
	// MaxPromptRunes: "Length should be less than 1500 characters."
	MaxPromptRunes = 1500
	// MaxSeed is the largest seed; seeds are 0..2^31-1.
	MaxSeed = math.MaxInt32
)

// promptFields are held to MaxPromptRunes.
var promptFields = []string{"prompt", "negative_prompt"}

// runcomfyRules applies RunComfy's own rules to any model's input. Each rule
// judges only values of the type it is about; a wrong type is the schema's
// to report.
func runcomfyRules(input map[string]any) []FieldError {
	var errs []FieldError
	for _, f := range promptFields {
		s, ok := input[f].(string)
		if n := utf8.RuneCountInString(s); ok && n >= MaxPromptRunes {
			errs = append(errs, FieldError{Field: f, Rule: "prompt-length",
				Msg: fmt.Sprintf("%s is %d characters, must be shorter than %d", show(s), n, MaxPromptRunes)})
		}
	}
	if v, ok := input["seed"]; ok && v != nil {
		if msg := seedProblem(v); msg != "" {
			errs = append(errs, FieldError{Field: "seed", Rule: "seed-range", Msg: msg})
		}
	}
	for field, v := range input {
		errs = append(errs, urlRules(field, v)...)
	}
	return errs
}

// seedProblem returns why v is not a seed in 0..MaxSeed, or "" when it is,
// or when v is not a number at all (a type error, the schema's business).
func seedProblem(v any) string {
	var n float64
	switch x := v.(type) {
	case int64:
		n = float64(x)
	case int:
		n = float64(x)
	case float64:
		n = x
	default:
		return ""
	}
	if n != math.Trunc(n) {
		return fmt.Sprintf("%s is not an integer; seeds are 0..%d", show(v), MaxSeed)
	}
	if n < 0 || n > MaxSeed {
		return fmt.Sprintf("%s is outside 0..%d", show(v), MaxSeed)
	}
	return ""
}

// urlRules checks the URLs of one top-level field: every string of a field
// named *_url or *_urls, and URL-looking strings of fields that name a
// medium (image, img, audio, video), since RunComfy fetches those itself.
func urlRules(field string, v any) []FieldError {
	named := strings.HasSuffix(field, "_url") || strings.HasSuffix(field, "_urls")
	if !named && !mentionsMedia(field) {
		return nil
	}
	check := func(path string, s string) []FieldError {
		if localfile.IsRef(s) {
			return nil // a local file: checked where it is, sent as the runner's localfile.Sender says
		}
		if !named && !looksLikeURL(s) {
			return nil
		}
		if rule, msg := urlProblem(s); rule != "" {
			return []FieldError{{Field: field, Path: path, Rule: rule, Msg: msg}}
		}
		return nil
	}
	switch x := v.(type) {
	case string:
		return check("", x)
	case []any:
		var errs []FieldError
		for i, item := range x {
			if s, ok := item.(string); ok {
				errs = append(errs, check(pointer([]string{field, strconv.Itoa(i)}), s)...)
			}
		}
		return errs
	}
	return nil
}

func mentionsMedia(field string) bool {
	f := strings.ToLower(field)
	for _, m := range []string{"image", "img", "audio", "video"} {
		if strings.Contains(f, m) {
			return true
		}
	}
	return false
}

func looksLikeURL(s string) bool {
	return strings.Contains(s, "://") || strings.HasPrefix(strings.ToLower(s), "data:")
}

// CheckURL reports whether raw may be handed to RunComfy as an input file:
// an https URL, or http to a loopback host (127.0.0.0/8, ::1, localhost) so
// that tests can serve files locally. RunComfy fetches inputs from its own
// servers, so any other http URL, and data: URIs (documented for the
// serverless API only), would fail there after the job is paid for.
func CheckURL(raw string) error {
	if rule, msg := urlProblem(raw); rule != "" {
		return errors.New(msg)
	}
	return nil
}

// urlProblem returns the rule raw breaks ("url" or "https") and why, or
// two empty strings.
func urlProblem(raw string) (rule, msg string) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || (u.Host == "" && u.Scheme != "data") {
		return "url", fmt.Sprintf("%s is not an absolute URL", show(raw))
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return "", ""
	case "http":
		if isLoopback(u.Hostname()) {
			return "", ""
		}
		return "https", fmt.Sprintf("%s: http is allowed only for loopback hosts; use https", show(raw))
	}
	return "https", fmt.Sprintf("%s: scheme %s is not accepted; use https", show(raw), u.Scheme)
}

// IsLoopbackURL reports a URL whose host, as written, is this machine.
func IsLoopbackURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && isLoopback(u.Hostname())
}

// isLoopback looks at the host as written, without DNS: a name that
// resolves to 127.0.0.1 is still a name RunComfy would have to reach.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
