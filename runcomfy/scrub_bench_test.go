package runcomfy

import (
	"strings"
	"testing"
)

// BenchmarkScrub: scrubbing a 64 MiB answer whose data: URL is written
// with every slash escaped (\/, as some encoders write), and without.
func BenchmarkScrub(b *testing.B) {
	c := &Client{token: "tok/<&>-9f8e"}
	for _, slash := range []string{`/`, `\/`} {
		data := []byte(`{"output":{"video":"data:video` + slash + `mp4;base64,` + strings.Repeat("QUJDRE"+slash+"ZHSElKS0xNTk9QUVJTVFVWV1hZWlthYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5", 1<<20) + `"}}`)
		b.Run("slash "+slash, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				c.scrub(data)
			}
		})
	}
}
