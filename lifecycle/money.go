package lifecycle

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// number reads a JSON number or a string holding one. ok is false for
// anything else, absent and null included.
func number(raw json.RawMessage) (v float64, present, ok bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return 0, false, false
	}
	text := string(raw)
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return 0, true, false
		}
		text = strings.TrimPrefix(strings.TrimSpace(s), "$")
	}
	v, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, true, false
	}
	return v, true, true
}

// ParseCost reads a result's cost in USD: a number or a numeric string. A
// missing cost is unknown (nil), never $0. A negative or unreadable one is
// unknown too, with a warning that says what was sent.
func ParseCost(raw json.RawMessage) (usd *float64, warning string) {
	v, present, ok := number(raw)
	switch {
	case !present:
		return nil, ""
	case !ok:
		return nil, fmt.Sprintf("ignored an unreadable cost %s", clip(string(raw), 60))
	case v < 0:
		return nil, fmt.Sprintf("ignored a negative cost %s", clip(string(raw), 60))
	}
	return &v, ""
}

// Price is a model's price as GET /v1/models/{id} gives it.
type Price struct {
	BaseUSD json.RawMessage // base_price_usd: a number or a numeric string
	Unit    string          // price_unit
}

// Base reads the base price, when it is a number or a numeric string.
func (p Price) Base() (usd float64, ok bool) {
	v, _, ok := number(p.BaseUSD)
	return v, ok
}

// Estimate prices one job's input. It returns ok=false and why when it
// cannot: comfybatch estimates only the units RunComfy's own code prices,
// "second" (times the job's duration) and "output" (once per job), and
// never a price it cannot read, a negative one, or $0 (which would let a
// budget cap believe that anything fits).
func Estimate(input json.RawMessage, p Price) (usd float64, ok bool, why string) {
	base, present, readable := number(p.BaseUSD)
	switch {
	case !present:
		return 0, false, "the API gave no base_price_usd"
	case !readable:
		return 0, false, fmt.Sprintf("base_price_usd %s is not a number", clip(string(p.BaseUSD), 40))
	case base <= 0:
		return 0, false, fmt.Sprintf("base_price_usd %s is no basis for an estimate", clip(string(p.BaseUSD), 40))
	}
	switch unit := strings.ToLower(strings.TrimSpace(p.Unit)); unit {
	case "second":
		d, ok := duration(input)
		if !ok {
			return 0, false, "no duration in the input"
		}
		return base * d, true, ""
	case "output":
		return base, true, ""
	default:
		return 0, false, fmt.Sprintf("price unit %q is not one comfybatch can estimate", p.Unit)
	}
}

// Charge is what a submission counts for under a budget cap: the larger of
// its estimate and the highest cost RunComfy has reported for the model so
// far, so that a price that is wrong or too low is corrected by what was
// actually billed. ok is false when there is no basis at all.
func Charge(estimate float64, estimated bool, highestReported float64) (usd float64, ok bool) {
	if !estimated || estimate <= 0 {
		estimate = 0
	}
	usd = max(estimate, highestReported)
	return usd, usd > 0
}

// duration reads a job's duration input, in seconds: a number above 0.
func duration(input json.RawMessage) (float64, bool) {
	var v struct{ Duration json.RawMessage }
	if json.Unmarshal(input, &v) != nil {
		return 0, false
	}
	d, _, ok := number(v.Duration)
	return d, ok && d > 0
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// MayBeBilled reports whether a submission may have cost money, by the
// outcome the ledger recorded for it ("" while it has none) and whether
// RunComfy named its request: all but one that proved no job was created
// (pending), an input rejected before any request existed (failed without
// a request id), and one cancelled in RunComfy's queue. A budget counts
// each such submission at its estimate until RunComfy reports its cost.
func MayBeBilled(outcome State, hasRequest bool) bool {
	switch outcome {
	case Pending, Cancelled:
		return false
	case Failed:
		return hasRequest
	}
	return true
}

// Ran reports a job, or a submission by its outcome, that RunComfy took
// and finished, with a result or a failure: what it cost is what RunComfy
// reports, and unknown when it reported nothing (never $0).
func Ran(st State, hasRequest bool) bool {
	return hasRequest && (st == Completed || st == Done || st == Failed)
}
