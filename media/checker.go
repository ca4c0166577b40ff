package media

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"comfybatch/runcomfy"
)

// Defaults for a Checker's zero fields.
const (
	DefaultConcurrency = 4
	DefaultTimeout     = time.Minute // per fetch, when Checker.HTTP is nil
)

// Item is one media URL to check, and what it should be.
type Item struct {
	URL  string
	Kind Kind
}

// Checker fetches media URLs and checks them against Rules.
type Checker struct {
	// HTTP fetches the files. It must not add the API token: these are
	// third-party hosts. Nil means a plain client with DefaultTimeout.
	HTTP *http.Client
	// Rules are the limits; the zero value means DefaultRules().
	Rules Rules
	// Concurrency bounds the fetches in flight; <= 0 means DefaultConcurrency.
	Concurrency int
	// Limiter, when set, paces the fetches.
	Limiter *rate.Limiter
}

// Check fetches each distinct URL of items once, at most Concurrency at a
// time, and returns the problems found, keyed by URL; a URL without
// problems has no key. A URL listed as both an image and audio is checked
// as the first kind it was listed as, with a "kind" problem. When ctx ends,
// the URLs not yet checked get a "fetch" problem; callers that care check
// ctx.Err().
func (c *Checker) Check(ctx context.Context, items []Item) map[string][]Problem {
	kinds := make(map[string]Kind, len(items))
	var order []string
	out := map[string][]Problem{}
	for _, it := range items {
		k, seen := kinds[it.URL]
		switch {
		case !seen:
			kinds[it.URL] = it.Kind
			order = append(order, it.URL)
		case k != it.Kind && len(out[it.URL]) == 0:
			out[it.URL] = []Problem{{URL: it.URL, Rule: "kind",
				Msg: fmt.Sprintf("used as both %s and %s; one file cannot be both", k, it.Kind)}}
		}
	}

	client, rules, limit := c.HTTP, c.Rules, c.Concurrency
	if client == nil {
		client = &http.Client{Timeout: DefaultTimeout}
	}
	if reflect.ValueOf(rules).IsZero() {
		rules = DefaultRules()
	}
	if limit <= 0 {
		limit = DefaultConcurrency
	}

	var mu sync.Mutex
	var g errgroup.Group
	g.SetLimit(limit)
	for _, u := range order {
		g.Go(func() error {
			probs := c.checkOne(ctx, client, rules, u, kinds[u])
			for i := range probs {
				probs[i].URL = u
			}
			if len(probs) > 0 {
				mu.Lock()
				out[u] = append(out[u], probs...)
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait() // the workers report problems, not errors
	return out
}

func (c *Checker) checkOne(ctx context.Context, client *http.Client, rules Rules, url string, kind Kind) []Problem {
	// RunComfy fetches inputs itself, from the internet: a URL it would
	// refuse is not worth fetching here.
	if err := runcomfy.CheckURL(url); err != nil {
		return []Problem{{Rule: "https", Msg: err.Error()}}
	}
	if c.Limiter != nil {
		if err := c.Limiter.Wait(ctx); err != nil {
			return []Problem{{Rule: "fetch", Msg: fmt.Sprintf("not fetched: %v", err)}}
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return []Problem{{Rule: "fetch", Msg: err.Error()}}
	}
	resp, err := client.Do(req)
	if err != nil {
		return []Problem{{Rule: "fetch", Msg: err.Error()}}
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return []Problem{{Rule: "fetch", Msg: fmt.Sprintf("answered HTTP %s", resp.Status)}}
	}
	switch kind {
	case Image:
		return CheckImage(resp.Body, resp.ContentLength, rules)
	case Audio:
		return CheckAudio(resp.Body, resp.ContentLength, rules)
	}
	return []Problem{{Rule: "kind", Msg: fmt.Sprintf("unknown kind %v", kind)}}
}
