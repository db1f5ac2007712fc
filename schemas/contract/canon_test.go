package contract

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
)

// RFC 8785 Appendix B: IEEE-754 doubles and their serialization (NaN and Infinity have none).
var appendixB = []struct {
	bits uint64
	want string
}{
	{0x0000000000000000, "0"},
	{0x8000000000000000, "0"},
	{0x0000000000000001, "5e-324"},
	{0x8000000000000001, "-5e-324"},
	{0x7fefffffffffffff, "1.7976931348623157e+308"},
	{0xffefffffffffffff, "-1.7976931348623157e+308"},
	{0x4340000000000000, "9007199254740992"},
	{0xc340000000000000, "-9007199254740992"},
	{0x4430000000000000, "295147905179352830000"},
	{0x44b52d02c7e14af5, "9.999999999999997e+22"},
	{0x44b52d02c7e14af6, "1e+23"},
	{0x44b52d02c7e14af7, "1.0000000000000001e+23"},
	{0x444b1ae4d6e2ef4e, "999999999999999700000"},
	{0x444b1ae4d6e2ef4f, "999999999999999900000"},
	{0x444b1ae4d6e2ef50, "1e+21"},
	{0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"},
	{0x3eb0c6f7a0b5ed8d, "0.000001"},
	{0x41b3de4355555553, "333333333.3333332"},
	{0x41b3de4355555554, "333333333.33333325"},
	{0x41b3de4355555555, "333333333.3333333"},
	{0x41b3de4355555556, "333333333.3333334"},
	{0x41b3de4355555557, "333333333.33333343"},
	{0xbecbf647612f3696, "-0.0000033333333333333333"},
	{0x43143ff3c1cb0959, "1424953923781206.2"},
}

func TestRFC8785Numbers(t *testing.T) {
	for _, tc := range appendixB {
		f := math.Float64frombits(tc.bits)
		if got := string(appendES6(nil, f)); got != tc.want {
			t.Errorf("%016x: %s, want %s", tc.bits, got, tc.want)
		}
		// Through the whole canonicalizer, written as a number with an exponent (not an integer literal).
		lit := strconv.FormatFloat(f, 'e', -1, 64)
		got, err := Canonical(nil, []byte(lit))
		if err != nil || string(got) != tc.want {
			t.Errorf("Canonical(%s) = %s, %v; want %s", lit, got, err, tc.want)
		}
	}
	for _, lit := range []string{"1e400", "-1e309", "1.8e308"} {
		if _, err := Canonical(nil, []byte(lit)); !errors.Is(err, ErrInvalidEvent) {
			t.Errorf("%s (not a finite double): %v, want ErrInvalidEvent", lit, err)
		}
	}
	if got, _ := Canonical(nil, []byte("1e-400")); string(got) != "0" {
		t.Errorf("1e-400 (underflow) = %s, want 0", got)
	}
}

// RFC 8785 §3.2.2's example, and §3.2.3's sorting example (UTF-16 order puts U+1F600 before U+FB33).
func TestRFC8785Examples(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}`, `{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`},
		{`{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}`, "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"ö\":\"Latin Small Letter O With Diaeresis\"," +
			"\"€\":\"Euro Sign\",\"😀\":\"Emoji: Grinning Face\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}"},
	} {
		got, err := Canonical(nil, []byte(tc.in))
		if err != nil || string(got) != tc.want {
			t.Errorf("Canonical:\n got %q, %v\nwant %q", got, err, tc.want)
		}
	}
}

// The contract's integer rule: an integer literal is kept as written, so ids beyond 2^53 stay distinct, while
// the other spellings of a number still canonicalize alike.
func TestIntegerRule(t *testing.T) {
	a, _ := Canonical(nil, []byte(`{"order":9007199254740993}`))
	b, _ := Canonical(nil, []byte(`{"order":9007199254740992}`))
	if bytes.Equal(a, b) || string(a) != `{"order":9007199254740993}` {
		t.Fatalf("integers beyond 2^53: %s and %s, want them distinct and as written", a, b)
	}
	// Pure JCS (what jsontext does with its default integer canonicalization) merges them: the rule matters.
	ja, jb := jsontext.Value(`{"order":9007199254740993}`), jsontext.Value(`{"order":9007199254740992}`)
	if err := ja.Canonicalize(); err != nil {
		t.Fatal(err)
	}
	if err := jb.Canonicalize(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ja, jb) {
		t.Fatalf("pure JCS keeps %s and %s apart; the test no longer shows the collision", ja, jb)
	}
	for _, spellings := range [][]string{{"1", "1.0", "1e0", "10e-1", "0.1e1"}, {"1.5", "1.50", "15e-1"},
		{"100", "1e2", "1E+2", "100.0"}, {"-2", "-2.0", "-0.2e1"}, {"0", "0.0", "-0.0", "0e10"}} {
		want, _ := Canonical(nil, []byte(spellings[0]))
		for _, s := range spellings[1:] {
			if got, err := Canonical(nil, []byte(s)); err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s canonicalizes to %s, %v; %s to %s", s, got, err, spellings[0], want)
			}
		}
	}
	if got, _ := Canonical(nil, []byte("-0")); string(got) != "0" {
		t.Errorf("-0 = %s, want 0 (as JCS, and jsontext with raw integers, write it)", got)
	}
}

func TestCanonicalRefuses(t *testing.T) {
	for _, tc := range []struct{ in, reason string }{
		{`{"a":1,"a":2}`, `duplicate member name "a"`},
		{`{"a":1,"\u0061":2}`, `duplicate member name "a"`},
		{`{"x":{"b":1,"c":[{"d":1,"d":1}]}}`, `duplicate member name "d"`},
		{"\"\xff\"", "invalid UTF-8"},
		{"{\"\xc3\x28\":1}", "invalid UTF-8"},
		{`"\ud800"`, "lone UTF-16 surrogate"},
		{`"\udc00\ud800"`, "lone UTF-16 surrogate"},
		{`"\ud800x"`, "lone UTF-16 surrogate"},
		{`[1e999]`, "out of the range"},
	} {
		_, err := Canonical(nil, []byte(tc.in))
		if !errors.Is(err, ErrInvalidEvent) || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%s: %v, want ErrInvalidEvent saying %q", tc.in, err, tc.reason)
		}
	}
	for _, in := range []string{`{"a":007}`, `[1,]`, `{"a" 1}`, `NaN`, "\"\x01\"", `{"a":1} x`} {
		if _, err := Canonical(nil, []byte(in)); !errors.Is(err, ErrSyntax) {
			t.Errorf("%s: %v, want ErrSyntax", in, err)
		}
	}
}

// jsontextCanonical is go-json-experiment's canonicalization with the contract's integer rule: the reference.
func jsontextCanonical(in []byte) ([]byte, error) {
	v := jsontext.Value(append([]byte(nil), in...))
	err := v.Canonicalize(jsontext.CanonicalizeRawInts(false))
	return v, err
}

// canonicalCorpus are values the differential tests run; the fuzz corpora add more.
var canonicalCorpus = []string{
	`{}`, `[]`, `""`, `0`, `-0`, `true`, `null`, `[[[]]]`, `{"":{"":[]}}`,
	`{"b":2,"a":1,"c":{"z":[3,2,1],"y":"\u00e9\/\t"}}`,
	`{"type":"track","event":"Signed Up","properties":{"revenue":19.990,"qty":3,"big":12345678901234567890,"tiny":1e-9}}`,
	`{"é":1,"e":2,"\u00e9\u0301":3,"E":4,"😀":5,"\uffff":6,"\ud800\udc00":7}`,
	`"\u0000\u001f\u007f\u0080\u2028\u2029\\\"\/"`,
	`[1.7976931348623157e308,5e-324,-5e-324,0.1,0.2,0.30000000000000004,123456789012345680000,1e21,1e-7,1e-6]`,
	`{"a":[{"c":1,"b":2},{"e":[],"d":{}}],"a2":"x"}`,
	" { \"w\" :\t\"s\" ,\n\"v\" : [ 1 , 2 ] } ",
}

func TestCanonicalMatchesJSONText(t *testing.T) {
	for _, in := range canonicalCorpus {
		checkAgainstJSONText(t, []byte(in))
	}
}

func checkAgainstJSONText(t *testing.T, in []byte) {
	t.Helper()
	got, err := Canonical(nil, in)
	want, jerr := jsontextCanonical(in)
	switch {
	case err == nil && jerr == nil:
		if !bytes.Equal(got, want) {
			t.Fatalf("%q:\n got %s\nwant %s (jsontext)", in, got, want)
		}
	case err == nil && jerr != nil:
		// jsontext refuses a few things the contract takes: nesting beyond its own limit is not one of them.
		t.Fatalf("%q: accepted as %s, jsontext refuses: %v", in, got, jerr)
	case err != nil && jerr == nil:
		// The contract refuses a number beyond a double's range (RFC 8785 §3.2.2.3: no canonical form);
		// jsontext writes the largest double instead.
		if !strings.Contains(err.Error(), "nesting too deep") &&
			!(strings.Contains(err.Error(), violationRange) && bytes.Contains(want, []byte("1.7976931348623157e+308"))) {
			t.Fatalf("%q: refused (%v), jsontext accepts as %s", in, err, want)
		}
	}
}

// FuzzCanonical holds the canonicalizer to go-json-experiment's (the same rules, the same bytes) and checks that
// the canonical form is a fixed point.
func FuzzCanonical(f *testing.F) {
	for _, in := range canonicalCorpus {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkAgainstJSONText(t, in)
		if out, err := Canonical(nil, in); err == nil {
			if again, err := Canonical(nil, out); err != nil || !bytes.Equal(again, out) {
				t.Fatalf("not a fixed point: %s -> %s, %v", out, again, err)
			}
		}
	})
}
