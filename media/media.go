// Package media checks the image and audio files a job's input points at
// against what RunComfy accepts (SPEC §4), for `validate --media`: each
// distinct URL is fetched once and judged from its bytes — format from the
// magic number, dimensions from the image header, duration from the WAV
// header or the MP3 frames — never reading more than the size limit allows.
package media

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"
)

// Kind is the kind of medium a field holds.
type Kind int

const (
	Image Kind = iota + 1
	Audio
)

func (k Kind) String() string {
	switch k {
	case Image:
		return "image"
	case Audio:
		return "audio"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Rules are the limits a file must meet.
type Rules struct {
	// MinDim and MaxDim bound width and height exclusively: each must be
	// over MinDim and under MaxDim.
	MinDim, MaxDim int
	MaxImageBytes  int64
	ImageFormats   []string // as named by the sniffer: jpeg, png, bmp, webp, ...
	MaxAudioBytes  int64
	AudioFormats   []string // wav, mp3
	// MinAudio and MaxAudio bound the duration inclusively.
	MinAudio, MaxAudio time.Duration
}

// DefaultRules are RunComfy's limits for wan-2-6 image-to-video inputs.
// Sizes are decimal megabytes: the pages say "less than 10 MB" without
// saying which megabyte, and the smaller reading never lets through a file
// the server could refuse.
func DefaultRules() Rules {
	return Rules{
		MinDim:        360,
		MaxDim:        2000,
		MaxImageBytes: 10_000_000,
		ImageFormats:  []string{"jpeg", "png", "bmp", "webp"},
		MaxAudioBytes: 15_000_000,
		AudioFormats:  []string{"wav", "mp3"},
		MinAudio:      3 * time.Second,
		MaxAudio:      30 * time.Second,
	}
}

// Problem is one reason a file would be refused. Rule is one of "https",
// "fetch", "kind", "format", "decode", "size", "dimensions", "duration".
type Problem struct {
	URL  string
	Rule string
	Msg  string
}

func (p Problem) String() string { return p.URL + ": " + p.Msg }

// KindOfField tells which medium an input field holds from its name:
// img_url, image_url, image_urls or any name with "image" is an image,
// audio_url or any name with "audio" is audio. Callers judge only the
// field's URL values: "audio" is also the seed model's boolean switch.
func KindOfField(field string) (Kind, bool) {
	f := strings.ToLower(field)
	switch {
	case strings.Contains(f, "audio"):
		return Audio, true
	case strings.Contains(f, "image"), f == "img_url", f == "img_urls":
		return Image, true
	}
	return 0, false
}

// ItemsOf lists the media URLs of one input: the string values, or the
// strings of array values, of fields KindOfField recognises, where the
// value is an http(s) URL.
func ItemsOf(input map[string]any) []Item {
	var items []Item
	add := func(k Kind, v any) {
		if s, ok := v.(string); ok && isWebURL(s) {
			items = append(items, Item{URL: s, Kind: k})
		}
	}
	for field, v := range input {
		k, ok := KindOfField(field)
		if !ok {
			continue
		}
		if list, ok := v.([]any); ok {
			for _, e := range list {
				add(k, e)
			}
			continue
		}
		add(k, v)
	}
	return items
}

func isWebURL(s string) bool {
	s = strings.ToLower(s)
	return strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "http://")
}

// limitedReader counts what it reads and stops after max+1 bytes, so a
// file over the limit is known to be over it without reading it all.
type limitedReader struct {
	r   io.Reader
	n   int64 // bytes read so far
	max int64
}

func newLimited(r io.Reader, max int64) *limitedReader {
	return &limitedReader{r: r, max: max}
}

func (l *limitedReader) Read(p []byte) (int, error) {
	left := l.max + 1 - l.n
	if left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > left {
		p = p[:left]
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	return n, err
}

// measure returns the file's size: the announced size when there is one,
// otherwise what is left is read (up to the limit) and counted.
func measure(size int64, lr *limitedReader, buffered *bufio.Reader) int64 {
	if size >= 0 {
		return size
	}
	_, _ = io.Copy(io.Discard, buffered)
	return lr.n
}

func sizeProblem(size, max int64) []Problem {
	if size <= max {
		return nil
	}
	over := mb(size)
	if size == max+1 {
		over = "more than " + mb(max) // counted up to the limit only
	}
	return []Problem{{Rule: "size", Msg: fmt.Sprintf("file is %s, over the %s limit", over, mb(max))}}
}

func mb(n int64) string {
	if n%1_000_000 == 0 {
		return fmt.Sprintf("%d MB", n/1_000_000)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/1e6)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
