package media_test

// Builders of small, real media files for the tests. Everything is made
// here rather than stored, so each file's properties are visible in code.

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/jpeg"
	"image/png"
	"testing"

	"golang.org/x/image/bmp"
)

func pngFile(t *testing.T, w, h int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func jpegFile(t *testing.T, w, h int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, image.NewGray(image.Rect(0, 0, w, h)), nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func bmpFile(t *testing.T, w, h int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := bmp.Encode(&b, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// webpHeader is a lossless WebP's RIFF container and VP8L header: enough
// for DecodeConfig, which is all the checker reads.
func webpHeader(w, h int) []byte {
	bits := uint32(w-1) | uint32(h-1)<<14 // alpha hint 0, version 0
	vp8l := append([]byte{0x2f}, binary.LittleEndian.AppendUint32(nil, bits)...)
	var b bytes.Buffer
	b.WriteString("RIFF")
	b.Write(binary.LittleEndian.AppendUint32(nil, uint32(4+8+len(vp8l)+1)))
	b.WriteString("WEBPVP8L")
	b.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(vp8l))))
	b.Write(vp8l)
	b.WriteByte(0) // pad the odd-sized chunk
	return b.Bytes()
}

// Audio layout shared by the WAV builders: 8 kHz mono 16-bit PCM.
const wavByteRate = 8000 * 2

// wavFile is a PCM WAV of the given length. A LIST chunk of odd size sits
// between fmt and data, as tagging tools put it, to prove chunks are
// walked and padding honoured. dataSize overrides the data chunk's length
// field when not 0 (streaming writers leave 0xFFFFFFFF there).
func wavFile(seconds float64, dataSize uint32) []byte {
	n := int(seconds * wavByteRate)
	le16 := func(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
	le32 := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	var body bytes.Buffer
	body.WriteString("WAVE")
	body.WriteString("fmt ")
	body.Write(le32(16))
	body.Write(le16(1))           // PCM
	body.Write(le16(1))           // mono
	body.Write(le32(8000))        // sample rate
	body.Write(le32(wavByteRate)) // byte rate
	body.Write(le16(2))           // block align
	body.Write(le16(16))          // bits per sample
	body.WriteString("LIST")
	body.Write(le32(5))
	body.WriteString("INFO\x00\x00") // 5 bytes + 1 pad
	body.WriteString("data")
	if dataSize == 0 {
		dataSize = uint32(n)
	}
	body.Write(le32(dataSize))
	body.Write(make([]byte, n))

	var b bytes.Buffer
	b.WriteString("RIFF")
	b.Write(le32(uint32(body.Len())))
	b.Write(body.Bytes())
	return b.Bytes()
}

// mp3File is a silent MPEG-1 Layer III stream: the same frame repeated,
// a header (32 kbit/s, 44.1 kHz, mono, no CRC) and a zero payload, which
// decodes as silence. Each frame is 1152 samples, about 26 ms.
func mp3File(seconds float64, id3 bool) []byte {
	const frameSize = 144 * 32000 / 44100 // 104 bytes, header included
	frame := make([]byte, frameSize)
	copy(frame, []byte{0xFF, 0xFB, 0x10, 0xC4})
	frames := int(seconds*44100/1152) + 1
	var b bytes.Buffer
	if id3 {
		// An empty ID3v2.3 tag, as most encoders write one.
		b.Write([]byte{'I', 'D', '3', 3, 0, 0, 0, 0, 0, 10})
		b.Write(make([]byte, 10))
	}
	for range frames {
		b.Write(frame)
	}
	return b.Bytes()
}
