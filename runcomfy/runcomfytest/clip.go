package runcomfytest

import (
	"crypto/sha256"
	"encoding/binary"
	"strconv"
)

// Clip geometry: tiny, so that a clip is about 13 KB, and still a real
// video a browser plays: 8 frames of 32×32 at 8 frames a second.
const (
	clipW, clipH = 32, 32
	clipFrames   = 8
	clipFPS      = 8
)

// ClipBytes is a real, playable MP4 (H.264 Constrained Baseline, one
// second) whose picture derives from seed: a bar of one colour sweeps
// across a background of another, so that two requests' clips differ to
// the eye. Every macroblock is coded as I_PCM (raw samples), which any
// H.264 decoder plays and which needs no encoder: the picture is written
// as it is.
func ClipBytes(seed [32]byte) []byte {
	sps := nal(0x67, spsRBSP())
	pps := nal(0x68, ppsRBSP())
	var samples [][]byte
	for f := range clipFrames {
		samples = append(samples, avcc(nal(0x65, sliceRBSP(f, seed))))
	}
	return mp4(sps, pps, samples)
}

// bits writes an RBSP bit by bit, with Exp-Golomb codes.
type bits struct {
	b []byte
	n uint // bits used in the last byte
}

func (w *bits) u(v uint64, n int) {
	for i := n - 1; i >= 0; i-- {
		if w.n == 0 {
			w.b = append(w.b, 0)
		}
		if v>>uint(i)&1 == 1 {
			w.b[len(w.b)-1] |= 0x80 >> w.n
		}
		w.n = (w.n + 1) % 8
	}
}

func (w *bits) ue(v uint64) {
	v++
	n := 0
	for x := v; x > 1; x >>= 1 {
		n++
	}
	w.u(0, n)
	w.u(v, n+1)
}

func (w *bits) align() {
	for w.n != 0 {
		w.u(0, 1)
	}
}

func (w *bits) trailing() { w.u(1, 1); w.align() }

func spsRBSP() []byte {
	var w bits
	w.u(66, 8)   // profile_idc: Baseline
	w.u(0xC0, 8) // constraint_set0 and 1: Constrained Baseline
	w.u(30, 8)   // level 3.0
	w.ue(0)      // seq_parameter_set_id
	w.ue(0)      // log2_max_frame_num_minus4
	w.ue(2)      // pic_order_cnt_type: output order is decode order
	w.ue(0)      // max_num_ref_frames: every frame is intra
	w.u(0, 1)    // gaps_in_frame_num_value_allowed_flag
	w.ue(clipW/16 - 1)
	w.ue(clipH/16 - 1)
	w.u(1, 1) // frame_mbs_only_flag
	w.u(1, 1) // direct_8x8_inference_flag
	w.u(0, 1) // frame_cropping_flag
	w.u(0, 1) // vui_parameters_present_flag
	w.trailing()
	return w.b
}

func ppsRBSP() []byte {
	var w bits
	w.ue(0)   // pic_parameter_set_id
	w.ue(0)   // seq_parameter_set_id
	w.u(0, 1) // entropy_coding_mode_flag: CAVLC
	w.u(0, 1) // bottom_field_pic_order_in_frame_present_flag
	w.ue(0)   // num_slice_groups_minus1
	w.ue(0)   // num_ref_idx_l0_default_active_minus1
	w.ue(0)   // num_ref_idx_l1_default_active_minus1
	w.u(0, 1) // weighted_pred_flag
	w.u(0, 2) // weighted_bipred_idc
	w.ue(0)   // pic_init_qp_minus26 (se 0 = ue 0)
	w.ue(0)   // pic_init_qs_minus26
	w.ue(0)   // chroma_qp_index_offset
	w.u(0, 1) // deblocking_filter_control_present_flag
	w.u(0, 1) // constrained_intra_pred_flag
	w.u(0, 1) // redundant_pic_cnt_present_flag
	w.trailing()
	return w.b
}

// sliceRBSP is frame f: one IDR slice of I_PCM macroblocks.
func sliceRBSP(f int, seed [32]byte) []byte {
	var w bits
	w.ue(0)             // first_mb_in_slice
	w.ue(7)             // slice_type: I, every slice of the picture
	w.ue(0)             // pic_parameter_set_id
	w.u(0, 4)           // frame_num
	w.ue(uint64(f % 2)) // idr_pic_id: consecutive IDRs differ
	w.u(0, 1)           // no_output_of_prior_pics_flag
	w.u(0, 1)           // long_term_reference_flag
	w.ue(0)             // slice_qp_delta (se 0)
	bg := [3]byte{40 + seed[0]%160, 64 + seed[1]%128, 64 + seed[2]%128}
	bar := [3]byte{60 + seed[3]%170, 64 + seed[4]%128, 64 + seed[5]%128}
	pos := (f*clipW/clipFrames + int(seed[6])) % clipW
	for my := 0; my < clipH/16; my++ {
		for mx := 0; mx < clipW/16; mx++ {
			w.ue(25) // mb_type I_PCM
			w.align()
			pick := func(x int) [3]byte {
				if d := (x - pos + clipW) % clipW; d < 8 {
					return bar
				}
				return bg
			}
			for y := 0; y < 16; y++ {
				for x := 0; x < 16; x++ {
					w.b = append(w.b, pick(mx*16 + x)[0]+byte(y+my*16)/2)
				}
			}
			for c := 1; c <= 2; c++ {
				for y := 0; y < 8; y++ {
					for x := 0; x < 8; x++ {
						w.b = append(w.b, pick(mx*16 + 2*x)[c])
					}
				}
			}
		}
	}
	w.trailing()
	return w.b
}

// nal wraps an RBSP in a NAL unit header, with emulation prevention bytes.
func nal(header byte, rbsp []byte) []byte {
	out := []byte{header}
	zeros := 0
	for _, b := range rbsp {
		if zeros >= 2 && b <= 3 {
			out = append(out, 3)
			zeros = 0
		}
		out = append(out, b)
		if b == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return out
}

func avcc(n []byte) []byte { return append(binary.BigEndian.AppendUint32(nil, uint32(len(n))), n...) }

func box(typ string, parts ...[]byte) []byte {
	size := 8
	for _, p := range parts {
		size += len(p)
	}
	out := binary.BigEndian.AppendUint32(make([]byte, 0, size), uint32(size))
	out = append(out, typ...)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func u16(v int) []byte { return binary.BigEndian.AppendUint16(nil, uint16(v)) }
func u32(v int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }

var matrix = []byte{0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0}

func mp4(sps, pps []byte, samples [][]byte) []byte {
	const timescale = 1000
	delta := timescale / clipFPS
	dur := delta * len(samples)
	ftyp := box("ftyp", []byte("isom"), u32(0x200), []byte("isomiso2avc1mp41"))
	avcC := box("avcC", []byte{1, sps[1], sps[2], sps[3], 0xFF, 0xE1}, u16(len(sps)), sps, []byte{1}, u16(len(pps)), pps)
	avc1 := box("avc1", make([]byte, 6), u16(1), make([]byte, 16), u16(clipW), u16(clipH),
		u32(0x480000), u32(0x480000), u32(0), u16(1), make([]byte, 32), u16(0x18), []byte{0xff, 0xff}, avcC)
	var sizes []byte
	for _, s := range samples {
		sizes = append(sizes, u32(len(s))...)
	}
	stbl := func(offset int) []byte {
		return box("stbl",
			box("stsd", u32(0), u32(1), avc1),
			box("stts", u32(0), u32(1), u32(len(samples)), u32(delta)),
			box("stsc", u32(0), u32(1), u32(1), u32(len(samples)), u32(1)),
			box("stsz", u32(0), u32(0), u32(len(samples)), sizes),
			box("stco", u32(0), u32(1), u32(offset)))
	}
	moov := func(offset int) []byte {
		return box("moov",
			box("mvhd", u32(0), u32(0), u32(0), u32(timescale), u32(dur), u32(0x10000), u16(0x100), make([]byte, 10), matrix, make([]byte, 24), u32(2)),
			box("trak",
				box("tkhd", u32(3), u32(0), u32(0), u32(1), u32(0), u32(dur), make([]byte, 8), u16(0), u16(0), u16(0), u16(0), matrix, u32(clipW<<16), u32(clipH<<16)),
				box("mdia",
					box("mdhd", u32(0), u32(0), u32(0), u32(timescale), u32(dur), u16(0x55c4), u16(0)),
					box("hdlr", u32(0), u32(0), []byte("vide"), make([]byte, 12), []byte("VideoHandler\x00")),
					box("minf",
						box("vmhd", u32(1), make([]byte, 8)),
						box("dinf", box("dref", u32(0), u32(1), box("url ", u32(1)))),
						stbl(offset)))))
	}
	// The chunk offset is where the samples start: after ftyp, moov and
	// the mdat header; moov's size does not depend on the offset's value.
	offset := len(ftyp) + len(moov(0)) + 8
	var data []byte
	for _, s := range samples {
		data = append(data, s...)
	}
	out := append(ftyp, moov(offset)...)
	return append(out, box("mdat", data)...)
}

// clipSeed is the seed of output n of a request's clip.
func clipSeed(requestID string, n int) [32]byte {
	return sha256.Sum256([]byte("clip/" + requestID + "/" + strconv.Itoa(n)))
}
