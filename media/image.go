package media

import (
	"bufio"
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"strings"

	"golang.org/x/image/bmp"
	"golang.org/x/image/webp"
)

// configDecoders read only an image's header. They are called by format
// rather than through image.DecodeConfig so that the format judged is the
// one sniffed here, whatever decoders other packages have registered.
var configDecoders = map[string]func(io.Reader) (image.Config, error){
	"jpeg": jpeg.DecodeConfig,
	"png":  png.DecodeConfig,
	"bmp":  bmp.DecodeConfig,
	"webp": webp.DecodeConfig,
}

// sniffImage names an image format from its first bytes, or returns "".
// Formats RunComfy refuses are named too, for a clearer message.
func sniffImage(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte("\x89PNG\r\n\x1a\n")):
		return "png"
	case bytes.HasPrefix(head, []byte{0xFF, 0xD8, 0xFF}):
		return "jpeg"
	case bytes.HasPrefix(head, []byte("BM")):
		return "bmp"
	case len(head) >= 12 && string(head[:4]) == "RIFF" && string(head[8:12]) == "WEBP":
		return "webp"
	case bytes.HasPrefix(head, []byte("GIF87a")), bytes.HasPrefix(head, []byte("GIF89a")):
		return "gif"
	case bytes.HasPrefix(head, []byte("II*\x00")), bytes.HasPrefix(head, []byte("MM\x00*")):
		return "tiff"
	case len(head) >= 12 && string(head[4:8]) == "ftyp":
		switch string(head[8:12]) {
		case "avif", "avis":
			return "avif"
		case "heic", "heix", "mif1", "msf1":
			return "heic"
		}
	}
	return ""
}

// CheckImage judges an image from its bytes: format by magic number, width
// and height from the header, and
// size. size is the announced byte count, or -1 when unknown, in which case
// the rest of r is read, never more than rules.MaxImageBytes+1 bytes, to
// count it. Problems carry no URL; Checker fills it in.
//
// A file's name is not looked at: a PNG served as photo.jpg passes. RunComfy
// lists the formats it accepts, not names, and nothing documented says it
// refuses a file over its name; refusing here could stop a job the API runs.
func CheckImage(r io.Reader, size int64, rules Rules) []Problem {
	lr := newLimited(r, rules.MaxImageBytes)
	br := bufio.NewReader(lr)
	head, _ := br.Peek(16)

	var probs []Problem
	format := sniffImage(head)
	decode := configDecoders[format]
	switch {
	case format == "":
		probs = append(probs, Problem{Rule: "format", Msg: fmt.Sprintf("not a recognised image; accepted formats: %s", strings.Join(rules.ImageFormats, ", "))})
	case !contains(rules.ImageFormats, format):
		probs = append(probs, Problem{Rule: "format", Msg: fmt.Sprintf("format %s is not accepted; accepted formats: %s", format, strings.Join(rules.ImageFormats, ", "))})
	case decode == nil:
		probs = append(probs, Problem{Rule: "format", Msg: fmt.Sprintf("format %s cannot be checked here", format)})
	default:
		cfg, err := decode(br)
		if err != nil {
			probs = append(probs, Problem{Rule: "decode", Msg: fmt.Sprintf("cannot read the %s header: %v", format, err)})
			break
		}
		if !inside(cfg.Width, rules.MinDim, rules.MaxDim) || !inside(cfg.Height, rules.MinDim, rules.MaxDim) {
			probs = append(probs, Problem{Rule: "dimensions", Msg: fmt.Sprintf(
				"%s is %dx%d px; width and height must each be over %d and under %d",
				format, cfg.Width, cfg.Height, rules.MinDim, rules.MaxDim)})
		}
	}
	return append(probs, sizeProblem(measure(size, lr, br), rules.MaxImageBytes)...)
}

func inside(v, lo, hi int) bool { return v > lo && v < hi }
