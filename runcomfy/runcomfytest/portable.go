package runcomfytest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Portable request ids (Config.PortableIDs) carry everything about a job's
// fate, so that a Server in another process answers for them as the real
// API answers for a request made before a client restarted. The form is
//
//	fk-NONCE-SEQ-CREATED-QUEUE-RUN-FATE-OUTPUTS-KIND-INPUT-CHECK
//
// every field lower-case hex: NONCE drawn per Server (ids never repeat
// across processes), SEQ the Server's creation count, CREATED the Unix
// time in milliseconds, QUEUE and RUN the milliseconds in the queue and
// running, FATE the outcome (bits 0-1) and whether the first output URL
// expires (bit 2), OUTPUTS their number, KIND an index into portableKinds,
// INPUT the first bytes of the SHA-256 of the model and canonical input
// (see MatchesInput), CHECK the first bytes of the SHA-256 of all the rest:
// an id that was mistyped or made up is not found, as at RunComfy.
// The ids stay within RunComfy's [A-Za-z0-9_-]{1,128}.

// portableKinds numbers the Answers.OutputKind values for KIND.
var portableKinds = []string{"", "video", "videos", "image", "images", "audio", "audios", "nested", "data", "text"}

const (
	portablePrefix = "fk"
	inputDigestLen = 12 // hex digits of INPUT
	checkLen       = 8  // hex digits of CHECK
	expiresBit     = 4  // in FATE
)

// newNonce draws the per-Server part of portable ids. It is not drawn from
// the seeded RNG: two processes with the same Seed must not share ids.
func newNonce() string {
	var b [5]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// inputDigest names a submission's model and canonical input in an id.
func inputDigest(model string, canonical []byte) string {
	sum := sha256.Sum256([]byte(model + "\n" + string(canonical)))
	return hex.EncodeToString(sum[:])[:inputDigestLen]
}

func idCheck(body string) string {
	sum := sha256.Sum256([]byte("runcomfytest:" + body))
	return hex.EncodeToString(sum[:])[:checkLen]
}

// portableID encodes j, whose times are whole milliseconds, created under
// nonce; digest is its inputDigest.
func portableID(nonce string, j *job, digest string) string {
	fate := int64(j.outcome)
	if j.expires {
		fate |= expiresBit
	}
	kind := slices.Index(portableKinds, j.kind)
	fields := []int64{j.seq, j.created.UnixMilli(), j.queueEnd.Sub(j.created).Milliseconds(),
		j.runEnd.Sub(j.queueEnd).Milliseconds(), fate, int64(j.outputs), int64(kind)}
	var b strings.Builder
	b.WriteString(portablePrefix + "-" + nonce)
	for _, f := range fields {
		b.WriteString("-" + strconv.FormatInt(f, 16))
	}
	b.WriteString("-" + digest)
	body := b.String()
	return body + "-" + idCheck(body)
}

// parsePortable rebuilds the job a portable id describes, or reports that
// id is not one. What the id does not carry comes from the answering
// Server's configuration (cost) or is unknown (model, input).
func parsePortable(id string) (*job, bool) {
	parts := strings.Split(id, "-")
	if len(parts) != 11 || parts[0] != portablePrefix {
		return nil, false
	}
	body, check := id[:len(id)-len(parts[10])-1], parts[10]
	if check != idCheck(body) || len(parts[9]) != inputDigestLen {
		return nil, false
	}
	var f [7]int64
	for i := range f {
		v, err := strconv.ParseInt(parts[2+i], 16, 64)
		if err != nil || v < 0 {
			return nil, false
		}
		f[i] = v
	}
	created := time.UnixMilli(f[1])
	queueEnd := created.Add(time.Duration(f[2]) * time.Millisecond)
	j := &job{
		id:       id,
		created:  created,
		queueEnd: queueEnd,
		runEnd:   queueEnd.Add(time.Duration(f[3]) * time.Millisecond),
		outcome:  outcome(f[4] &^ expiresBit),
		expires:  f[4]&expiresBit != 0,
		outputs:  int(f[5]),
		adopted:  true,
	}
	if j.outcome > failStatus || f[4] > expiresBit|int64(failStatus) || f[6] >= int64(len(portableKinds)) {
		return nil, false
	}
	j.kind = portableKinds[f[6]]
	return j, true
}

// MatchesInput reports whether requestID is a portable id (Config.
// PortableIDs) that a Server created for a submission of input to model:
// a test can then prove that the request a ledger gives a job is the one
// made for that job, whichever process made it. input is the JSON body, in
// any key order.
func MatchesInput(requestID, model string, input []byte) (bool, error) {
	canonical, err := canonicalObject(input)
	if err != nil {
		return false, fmt.Errorf("input of request %s: %w", requestID, err)
	}
	parts := strings.Split(requestID, "-")
	if _, ok := parsePortable(requestID); !ok {
		return false, fmt.Errorf("%q is not a portable request id", requestID)
	}
	return parts[9] == inputDigest(model, canonical), nil
}
