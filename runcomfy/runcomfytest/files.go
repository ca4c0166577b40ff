package runcomfytest

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"image"
	"image/color"
	"image/png"
	"strconv"
)

// OutputBytes is the content of output n (an index, from 0) of a request: a
// small, real, playable MP4 (ClipBytes, about 13 KB) whose picture derives
// from requestID and n. Tests compare downloads to it.
func OutputBytes(requestID string, n int) []byte {
	return ClipBytes(clipSeed(requestID, n))
}

// ImageBytes is the content of output n of a request whose outputs are
// images: a real 16×16 PNG whose pixels derive from requestID and n.
func ImageBytes(requestID string, n int) []byte {
	const side = 16
	pix := appendStream(nil, mediaSeed("image", requestID, n), side*side*3)
	img := image.NewNRGBA(image.Rect(0, 0, side, side))
	for i := range side * side {
		p := pix[3*i:]
		img.SetNRGBA(i%side, i/side, color.NRGBA{p[0], p[1], p[2], 0xff})
	}
	var b bytes.Buffer
	// png.Encode is deterministic for a given image, and cannot fail on
	// an in-memory buffer.
	if err := png.Encode(&b, img); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// AudioBytes is the content of output n of a request whose outputs are
// audio: a real MP3 stream of 8 silent MPEG-1 Layer III frames (about 0.2
// s), each carrying filler derived from requestID and n so that no two
// files are equal.
func AudioBytes(requestID string, n int) []byte {
	const (
		frames   = 8
		frameLen = 417 // 144 × 128 kbit/s ÷ 44.1 kHz, no padding
		sideInfo = 17  // mono MPEG-1
	)
	// Sync, MPEG-1, Layer III, no CRC; 128 kbit/s, 44.1 kHz, no padding;
	// mono, original.
	header := []byte{0xff, 0xfb, 0x90, 0xc4}
	filler := appendStream(nil, mediaSeed("audio", requestID, n), frames*(frameLen-len(header)-sideInfo))
	for i, b := range filler {
		if b == 0xff {
			filler[i] = 0xfe // no false frame sync for a scanning reader
		}
	}
	out := make([]byte, 0, frames*frameLen)
	for f := range frames {
		out = append(out, header...)
		// Zero side information: no main data is read, so the frame
		// decodes as silence whatever the filler holds.
		out = append(out, make([]byte, sideInfo)...)
		per := frameLen - len(header) - sideInfo
		out = append(out, filler[f*per:(f+1)*per]...)
	}
	return out
}

// mediaSeed keeps the streams of the non-video media apart from the MP4's
// and from each other.
func mediaSeed(kind, requestID string, n int) [sha256.Size]byte {
	return sha256.Sum256([]byte(kind + ":" + requestID + "/" + strconv.Itoa(n)))
}

// appendStream appends size bytes of counter-mode SHA-256 of seed:
// deterministic, and no two seeds share content.
func appendStream(out []byte, seed [sha256.Size]byte, size int) []byte {
	total := len(out) + size
	var block [sha256.Size + 8]byte
	copy(block[:], seed[:])
	for i := uint64(0); len(out) < total; i++ {
		binary.BigEndian.PutUint64(block[sha256.Size:], i)
		sum := sha256.Sum256(block[:])
		out = append(out, sum[:min(len(sum), total-len(out))]...)
	}
	return out
}
