package runcomfytest

import (
	"crypto/sha256"
	"encoding/binary"
	"strconv"
)

// OutputBytes is the content of output n (an index, from 0) of a request: a
// small but real MP4 container (an ftyp box, then an mdat box of bytes
// derived from requestID and n), 2 to 4 KB. Tests compare downloads to it.
func OutputBytes(requestID string, n int) []byte {
	seed := sha256.Sum256([]byte(requestID + "/" + strconv.Itoa(n)))
	size := 2048 + int(binary.BigEndian.Uint16(seed[:2]))%2048 // sizes differ between files

	ftyp := []byte("isom\x00\x00\x02\x00isomiso2avc1mp41") // major brand, version, compatible brands
	total := 8 + len(ftyp) + 8 + size
	out := make([]byte, 0, total)
	out = appendBoxHeader(out, "ftyp", len(ftyp))
	out = append(out, ftyp...)
	out = appendBoxHeader(out, "mdat", size)
	// Counter-mode SHA-256 of the seed: deterministic, and no two files
	// share content.
	var block [sha256.Size + 8]byte
	copy(block[:], seed[:])
	for i := uint64(0); len(out) < total; i++ {
		binary.BigEndian.PutUint64(block[sha256.Size:], i)
		sum := sha256.Sum256(block[:])
		out = append(out, sum[:min(len(sum), total-len(out))]...)
	}
	return out
}

// appendBoxHeader writes an ISO BMFF box header: 32-bit size (header
// included), then the four-letter type.
func appendBoxHeader(b []byte, typ string, payload int) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(8+payload))
	return append(b, typ...)
}
