package runcomfy

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// BenchmarkResultFilter: the filter's throughput on a 64 MiB answer, its
// bulk a kept data: URL, dropped padding, or a kept array of numbers
// (byte at a time), beside reading the same answer unfiltered.
func BenchmarkResultFilter(b *testing.B) {
	const size = 64 << 20
	nums := strings.Repeat("12345,", size/6)
	for _, tt := range []struct{ name, body string }{
		{"data URL", `{"status":"completed","output":{"video":"data:video/mp4;base64,` + strings.Repeat("QUJD", size/4) + `"}}`},
		{"padding", `{"padding":"` + strings.Repeat("x", size) + `","status":"completed"}`},
		{"numbers", `{"output":[` + nums + `1]}`},
	} {
		body := []byte(tt.body)
		buf := make([]byte, len(body))
		for _, filter := range []bool{false, true} {
			name := tt.name + "/unfiltered"
			if filter {
				name = tt.name + "/filtered"
			}
			b.Run(name, func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				for b.Loop() {
					var src io.Reader = bytes.NewReader(body)
					if filter {
						src = newResultFilter(src, smallValue)
					}
					if _, _, err := fill(src, buf[:0]); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
