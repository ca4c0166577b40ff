package runcomfy

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// filtered runs in through a resultFilter keeping values up to small
// bytes, read at once and one byte at a time: the two must agree.
func filtered(t testing.TB, in []byte, small int) (string, int) {
	t.Helper()
	f := newResultFilter(bytes.NewReader(in), small)
	out, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("filter %q: %v", in, err)
	}
	g := newResultFilter(iotest.OneByteReader(bytes.NewReader(in)), small)
	slow, err := io.ReadAll(iotest.OneByteReader(g))
	if err != nil {
		t.Fatalf("filter %q a byte at a time: %v", in, err)
	}
	if !bytes.Equal(out, slow) || f.dropped != g.dropped {
		t.Fatalf("filter %q: %q (%d dropped) at once, %q (%d dropped) a byte at a time", in, out, f.dropped, slow, g.dropped)
	}
	return string(out), f.dropped
}

func TestResultFilter(t *testing.T) {
	const small = 16
	big := strings.Repeat("x", 40)
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for _, tt := range []struct {
		name, in, want string // want "" for in unchanged
		dropped        int
	}{
		{"small values", `{"status":"completed","padding":"short","n":1}`, "", 0},
		{"large padding", `{"padding":"` + big + `","status":"completed"}`, `{"padding":null,"status":"completed"}`, 1},
		{"value of small bytes", `{"p":"` + strings.Repeat("x", small-2) + `"}`, "", 0},
		{"value of small+1 bytes", `{"p":"` + strings.Repeat("x", small-1) + `"}`, `{"p":null}`, 1},
		{"large output", `{"output":{"video":"data:video/mp4;base64,` + big + `"}}`, "", 0},
		{"every name the client reads", `{"request_id":"` + big + `","status":"` + big + `","queue_position":"` + big +
			`","output":"` + big + `","error":"` + big + `","created_at":"` + big + `","finished_at":"` + big +
			`","model_id":"` + big + `","cost":"` + big + `","error_code":"` + big + `","error_message":"` + big +
			`","message":"` + big + `","detail":"` + big + `"}`, "", 0},
		{"names in any case", `{"OUTPUT":"` + big + `","Error_Message":"` + big + `"}`, "", 0},
		// A name is compared as encoding/json reads it: unescaped, then
		// folded (ſ is s, \u212a is k).
		{"escaped name", `{"pad\u0064ing":"` + big + `","outp\u0075t":"` + big + `"}`, `{"pad\u0064ing":null,"outp\u0075t":"` + big + `"}`, 1},
		{"non-ASCII name", `{"ſtatus":"` + big + `","été":"` + big + `","co\u017ft":"` + big + `"}`, `{"ſtatus":"` + big + `","été":null,"co\u017ft":"` + big + `"}`, 1},
		{"long name", `{"` + strings.Repeat("k", 70) + `":"` + big + `"}`, `{"` + strings.Repeat("k", 70) + `":null}`, 1},
		{"long escaped name", `{"` + strings.Repeat(`\u0071`, 1) + `\u0075\u0065\u0075\u0065\u005f\u0070\u006f\u0073\u0069\u0074\u0069\u006f\u006e":"` + big + `"}`, "", 0},
		{"escaped surrogate name", `{"\ud83d\ude00":"` + big + `"}`, `{"\ud83d\ude00":null}`, 1},
		{"invalid UTF-8 name", "{\"stat\xffus\":\"" + big + "\"}", "{\"stat\xffus\":null}", 1},
		{"nested", `{"meta":{"a":[1,2,{"b":"c\"d"}],"e":"xxxxxxxx"},"status":"ok"}`, `{"meta":null,"status":"ok"}`, 1},
		{"nested output", `{"output":{"a":[1,2,{"padding":"` + big + `"}]}}`, "", 0},
		{"whitespace", " \n{ \"pad\" :\t[ 1 , 2 , 3 , 4 , 5 , 6 ] ,\r\n \"status\" : \"ok\" } \n", " \n{ \"pad\" :\tnull ,\r\n \"status\" : \"ok\" } \n", 1},
		{"escapes", `{"pad":"a\\\"b\\\\c\u00e9\/\b\f\n\r\tdddd","s":"\"}"}`, `{"pad":null,"s":"\"}"}`, 1},
		{"numbers", `{"a":-12345678901234567890.5e+10,"b":0,"c":-0.5E-3,"d":12345678901234567,"s":1}`, `{"a":null,"b":0,"c":-0.5E-3,"d":null,"s":1}`, 2},
		{"literals", `{"a":true,"b":false,"c":null,"d":[true,false,null,true,false]}`, `{"a":true,"b":false,"c":null,"d":null}`, 1},
		// Unread values are kept up to small bytes in all: padding split
		// into members each under small bytes is dropped past that. Values
		// of up to len(droppedMark) bytes are kept (null saves little).
		{"padding in small pieces", `{"a":"` + strings.Repeat("x", 10) + `","b":"` + strings.Repeat("x", 10) + `","c":"xxxxxxx","status":"` + big + `","d":"xxxxxxxx"}`,
			`{"a":"` + strings.Repeat("x", 10) + `","b":null,"c":"xxxxxxx","status":"` + big + `","d":null}`, 2},
		{"duplicates", `{"p":"` + big + `","p":1,"p":"` + big + `"}`, `{"p":null,"p":1,"p":null}`, 2},
		{"empty object", `{}`, "", 0},
		{"read name twice, escaped", `{"output":1,"outp\u0075t":"` + big + `"}`, "", 0},
		{"deep but valid", `{"p":` + deep(maxDepth-1) + `}`, `{"p":null}`, 1},

		// Not an object: passed through as it is.
		{"array", `["` + big + `"]`, "", 0},
		{"string", `"` + big + `"`, "", 0},
		{"garbage", `<html>` + big, "", 0},
		{"empty", ``, "", 0},

		// Not JSON: passed through from the first bad byte, and still not JSON.
		{"byte order mark", "\ufeff" + `{"p":"` + big + `"}`, "", 0},
		{"second value", `{"p":"` + big + `"}{"status":"ok"}`, `{"p":null}{"status":"ok"}`, 1},
		{"trailing bytes", `{"p":"` + big + `"} <html>`, `{"p":null} <html>`, 1},
		{"cut in a dropped value", `{"p":"` + big, `{"p":`, 0},
		{"cut in a small value", `{"p":"xx`, "", 0},
		{"cut after a dropped value", `{"p":"` + big + `"`, `{"p":null`, 1},
		{"bad in a small value", `{"p":[1 2],"q":"` + big + `"}`, "", 0},
		{"bad in a dropped value", `{"p":[11111111111111111111 2],"q":"` + big + `"}`, `{"p":` + droppedMark + `2],"q":"` + big + `"}`, 0},
		{"bad after a dropped value", `{"p":"` + big + `" "q":1}`, `{"p":null "q":1}`, 1},
		{"control byte in a dropped string", "{\"p\":\"" + big + "\x01\"}", "{\"p\":" + droppedMark + "\x01\"}", 0},
		{"bad escape", `{"p":"` + big + `\x"}`, `{"p":` + droppedMark + `x"}`, 0},
		{"bad number", `{"p":[1111111111111111111.e5]}`, `{"p":` + droppedMark + `e5]}`, 0},
		{"leading zero", `{"p":[1111111111111111111,00]}`, `{"p":` + droppedMark + `0]}`, 0},
		{"too deep", `{"p":` + deep(maxDepth) + `}`, `{"p":` + droppedMark + `[]` + strings.Repeat("]", maxDepth-1) + `}`, 0},
		{"bad literal", `{"p":[true,true,true,true,trux]}`, `{"p":` + droppedMark + `x]}`, 0},
		{"bad name", `{"p":1,2:3}`, "", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			if want == "" {
				want = tt.in
			}
			got, dropped := filtered(t, []byte(tt.in), small)
			if got != want || dropped != tt.dropped {
				t.Errorf("filter(%.200q)\n = %.200q, %d dropped\nwant %.200q, %d dropped", tt.in, got, dropped, want, tt.dropped)
			}
			if !json.Valid([]byte(tt.in)) && json.Valid([]byte(got)) {
				t.Errorf("invalid answer %.200q came out valid: %.200q", tt.in, got)
			}
		})
	}
}

// TestResultFilterSourceErrors: a read error of the body (a cut answer)
// is the filter's, after the bytes before it.
func TestResultFilterSourceErrors(t *testing.T) {
	cut := errors.New("cut")
	src := io.MultiReader(strings.NewReader(`{"status":"ok","p":"xx`), iotest.ErrReader(cut))
	out, err := io.ReadAll(newResultFilter(src, 16))
	if !errors.Is(err, cut) || string(out) != `{"status":"ok","p":` {
		t.Errorf("cut answer: %q, %v; want the bytes before a held value, then the cut", out, err)
	}
}

// memberDrops walks a valid JSON object as encoding/json reads it and says
// what the filter must make of it: each member's value, null where the
// filter drops it (its name, as encoding/json reads it, none the client
// reads, its value over what is left of small bytes for such values, or
// over len(droppedMark) bytes when less is left), and how many it drops.
func memberDrops(t testing.TB, in []byte, small int) (map[string]any, int) {
	dec := json.NewDecoder(bytes.NewReader(in))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("%q: not an object: %v %v", in, tok, err)
	}
	want, drops, spare := map[string]any{}, 0, small
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		key := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			t.Fatal(err)
		}
		if !readByClient(key) {
			if len(raw) > max(spare, len(droppedMark)) {
				want[key] = nil
				drops++
				continue
			}
			spare -= len(raw)
		}
		want[key] = decodeAny(t, raw)
	}
	return want, drops
}

// readByClient reports whether encoding/json decodes a member of this name
// into Result or errorBody: found out by decoding one, not from a list.
func readByClient(key string) bool {
	doc, _ := json.Marshal(map[string]string{key: "1"})
	for _, v := range []any{&Result{}, &errorBody{}} {
		// A string where a field wants another type is an error that
		// still names the field.
		err := json.Unmarshal(doc, v)
		if err != nil || !reflect.ValueOf(v).Elem().IsZero() {
			return true
		}
	}
	return false
}

func decodeAny(t testing.TB, b []byte) any {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %q: %v", b, err)
	}
	return v
}

// FuzzResultFilter: whatever the answer, the filter keeps every byte the
// client reads: a JSON object comes out as the same object with the large
// values of other members null, byte for byte the same when none is
// dropped, and decodes into Result and errorBody as the original does;
// anything else passes through, and what is not JSON stays so.
func FuzzResultFilter(f *testing.F) {
	for _, s := range []string{
		`{"status":"completed","padding":"xxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`,
		`{"padding":"xxxxxxxxxxxxxxxxxxxxxxxxx","output":{"video":"data:video/mp4;base64,AAAAAAAAAAAAAAAAAAAA"},"error":null}`,
		`{"OUTPUT":"xxxxxxxxxxxxxxxxxxxxxxxx","\u006futput":"yyyyyyyyyyyyyyyyyyyy","ſtatus":"zzzzzzzzzzzzzzzzzzz"}`,
		`{ "a" : [ 1 , -2.5e+3 , true , false , null , { "b" : "c\"\\\u00e9" } ] , "cost" : "0.12" }`,
		`{"message":"bad token aaaaaaaaaaaaaaaaaaaaaaaaaaaa","error_code":40100,"detail":[{"loc":["body","seed"],"msg":"x"}]}`,
		`{"p":[11111111111111111111 2]}`,
		`["xxxxxxxxxxxxxxxxxxxxxxxx"]`,
		`<html>bad gateway</html>`,
		`{"p":"xxxxxxxxxxxxxxxxxxxxxxx`,
		``,
	} {
		f.Add([]byte(s), uint8(8))
	}
	f.Fuzz(func(t *testing.T, in []byte, n uint8) {
		small := len(droppedMark) + int(n%64)
		out, dropped := filtered(t, in, small)
		valid := json.Valid(in)
		object := len(bytes.TrimLeft(in, " \t\r\n")) > 0 && bytes.TrimLeft(in, " \t\r\n")[0] == '{'
		switch {
		case !valid:
			if json.Valid([]byte(out)) && out != string(in) {
				t.Fatalf("invalid %q came out valid: %q", in, out)
			}
			return
		case !object:
			if out != string(in) {
				t.Fatalf("%q is not an object, and came out changed: %q", in, out)
			}
			return
		}
		want, drops := memberDrops(t, in, small)
		if dropped != drops {
			t.Fatalf("%q: %d values dropped, want %d: %q", in, dropped, drops, out)
		}
		if drops == 0 && out != string(in) {
			t.Fatalf("%q: nothing dropped, and it came out changed: %q", in, out)
		}
		if !json.Valid([]byte(out)) {
			t.Fatalf("%q came out invalid: %q", in, out)
		}
		if got := decodeAny(t, []byte(out)); !reflect.DeepEqual(got, any(want)) {
			t.Fatalf("%q came out %q: decodes to %v, want %v", in, out, got, want)
		}
		for _, v := range []func() any{func() any { return &Result{} }, func() any { return &errorBody{} }} {
			a, b := v(), v()
			errA, errB := json.Unmarshal(in, a), json.Unmarshal([]byte(out), b)
			if !reflect.DeepEqual(a, b) || (errA == nil) != (errB == nil) {
				t.Fatalf("%q came out %q: the client reads %+v (%v) from it, not %+v (%v)", in, out, b, errB, a, errA)
			}
		}
	})
}
