package media

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hajimehoshi/go-mp3"
)

// sniffAudio names an audio format from its first bytes, or returns "".
// Formats RunComfy refuses are named too, for a clearer message.
func sniffAudio(head []byte) string {
	switch {
	case len(head) >= 12 && string(head[:4]) == "RIFF" && string(head[8:12]) == "WAVE":
		return "wav"
	case bytes.HasPrefix(head, []byte("ID3")):
		return "mp3"
	case len(head) >= 2 && head[0] == 0xFF && head[1]&0xE6 == 0xE2:
		// An MPEG audio frame sync (11 bits) with layer III (01): a raw
		// MP3 without tags. AAC's ADTS shares the sync but has layer 00.
		return "mp3"
	case bytes.HasPrefix(head, []byte("OggS")):
		return "ogg"
	case bytes.HasPrefix(head, []byte("fLaC")):
		return "flac"
	case len(head) >= 8 && string(head[4:8]) == "ftyp":
		return "m4a"
	case len(head) >= 2 && head[0] == 0xFF && head[1]&0xF6 == 0xF0:
		return "aac"
	}
	return ""
}

// CheckAudio judges an audio file from its bytes: format by magic number,
// duration (WAV from its RIFF header; MP3 by counting its frames), and
// size. size is the announced byte count, or -1 when unknown. At most
// rules.MaxAudioBytes+1 bytes are read: a WAV needs its header only, an
// MP3 is read whole (its duration is the sum of its frames) unless it is
// already known to be too large, in which case its duration is not judged.
func CheckAudio(r io.Reader, size int64, rules Rules) []Problem {
	lr := newLimited(r, rules.MaxAudioBytes)
	br := bufio.NewReader(lr)
	head, _ := br.Peek(12)
	format := sniffAudio(head)

	var probs []Problem
	dur := time.Duration(-1) // unknown until measured
	var err error
	switch {
	case format == "":
		probs = append(probs, Problem{Rule: "format", Msg: fmt.Sprintf("not a recognised audio file; accepted formats: %s", strings.Join(rules.AudioFormats, ", "))})
	case !contains(rules.AudioFormats, format):
		probs = append(probs, Problem{Rule: "format", Msg: fmt.Sprintf("format %s is not accepted; accepted formats: %s", format, strings.Join(rules.AudioFormats, ", "))})
	case format == "wav":
		dur, err = wavDuration(br, size)
	case format == "mp3":
		if size > rules.MaxAudioBytes {
			break // its duration cannot be counted without reading past the limit
		}
		var data []byte
		data, err = io.ReadAll(br)
		if err == nil && int64(len(data)) > rules.MaxAudioBytes {
			size = int64(len(data)) // over the limit: reported below, duration unknown
			break
		}
		if err == nil {
			size = int64(len(data))
			dur, err = mp3Duration(data)
		}
	default:
		probs = append(probs, Problem{Rule: "format", Msg: fmt.Sprintf("format %s cannot be checked here", format)})
	}
	if err != nil {
		probs = append(probs, Problem{Rule: "decode", Msg: fmt.Sprintf("cannot read the %s file: %v", format, err)})
	} else if dur >= 0 && (dur < rules.MinAudio || dur > rules.MaxAudio) {
		probs = append(probs, Problem{Rule: "duration", Msg: fmt.Sprintf("%s lasts %.1f s; it must last %v to %v",
			format, dur.Seconds(), rules.MinAudio, rules.MaxAudio)})
	}
	return append(probs, sizeProblem(measure(size, lr, br), rules.MaxAudioBytes)...)
}

// wavDuration reads a RIFF/WAVE header up to the data chunk: duration is
// the data chunk's length over the fmt chunk's byte rate. Chunks between
// them are skipped, not kept. size (when known) caps a data length that
// claims more than the file holds, as streaming writers leave it.
func wavDuration(r io.Reader, size int64) (time.Duration, error) {
	var riff [12]byte
	if _, err := io.ReadFull(r, riff[:]); err != nil {
		return 0, err
	}
	offset := int64(12)
	var byteRate uint32
	for {
		var hdr [8]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return 0, fmt.Errorf("no data chunk: %w", err)
		}
		offset += 8
		id := string(hdr[:4])
		n := int64(binary.LittleEndian.Uint32(hdr[4:]))
		switch id {
		case "fmt ":
			if n < 16 {
				return 0, fmt.Errorf("fmt chunk of %d bytes is too short", n)
			}
			var f [16]byte
			if _, err := io.ReadFull(r, f[:]); err != nil {
				return 0, err
			}
			byteRate = binary.LittleEndian.Uint32(f[8:12])
			if err := skip(r, n-16+n%2); err != nil {
				return 0, err
			}
		case "data":
			if byteRate == 0 {
				return 0, errors.New("no byte rate: the data chunk comes before a valid fmt chunk")
			}
			if size >= 0 && offset+n > size {
				n = size - offset
			}
			return time.Duration(float64(n) / float64(byteRate) * float64(time.Second)), nil
		default:
			if err := skip(r, n+n%2); err != nil { // chunks are padded to even sizes
				return 0, err
			}
		}
		offset += n + n%2
	}
}

func skip(r io.Reader, n int64) error {
	if _, err := io.CopyN(io.Discard, r, n); err != nil {
		return fmt.Errorf("truncated chunk: %w", err)
	}
	return nil
}

// mp3Duration counts the MPEG frames of a whole MP3 file. go-mp3 walks
// the frame headers without decoding them when its source can seek.
func mp3Duration(data []byte) (time.Duration, error) {
	d, err := mp3.NewDecoder(bytes.NewReader(data))
	if err != nil {
		return 0, err
	}
	// Length is in bytes of 16-bit stereo PCM: 4 bytes per sample.
	samples := d.Length() / 4
	if samples <= 0 || d.SampleRate() <= 0 {
		return 0, errors.New("no audio frames")
	}
	return time.Duration(samples) * time.Second / time.Duration(d.SampleRate()), nil
}
