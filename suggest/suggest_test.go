package suggest

import "testing"

func TestDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"run", "run", 0},
		{"RUN", "run", 0}, // case does not count
		{"rn", "run", 1},
		{"stauts", "status", 1}, // a swap is one edit
		{"sttaus", "status", 1}, // "ta" for "at"
		{"stts", "status", 2},
		{"plan", "run", 3},
		{"", "abc", 3},
		{"kitten", "sitting", 3},
		{"héllo", "hello", 1}, // runes, not bytes
	} {
		if got := Distance(c.a, c.b); got != c.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := Distance(c.b, c.a); got != c.want {
			t.Errorf("Distance(%q, %q) = %d, want %d (not symmetric)", c.b, c.a, got, c.want)
		}
	}
}

func TestClosest(t *testing.T) {
	commands := []string{"run", "plan", "validate", "status", "results", "cancel", "models", "init", "fake-server", "completion"}
	for _, c := range []struct {
		word string
		want string // "" for no suggestion
	}{
		{"rn", "run"},
		{"runn", "run"},
		{"stauts", "status"},
		{"valdiate", "validate"},
		{"stat", "status"},   // a prefix of one command
		{"vali", "validate"}, // a prefix, too far for a typo
		{"re", ""},           // too short to be a prefix
		{"run", ""},          // a candidate itself: nothing to suggest
		{"deploy", ""},       // nothing near
		{"xyz", ""},          // nothing near
		{"model", "models"},  // one edit
		{"fakeserver", "fake-server"},
	} {
		got, ok := Closest(c.word, commands)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("Closest(%q) = %q, %v; want %q", c.word, got, ok, c.want)
		}
	}
	// Two candidates equally near: no guess.
	if got, ok := Closest("ab", []string{"aa", "bb"}); ok {
		t.Errorf("Closest between two equally near candidates = %q, want none", got)
	}
	// Two candidates the word begins: no guess.
	if got, ok := Closest("res", []string{"results", "resume"}); ok {
		t.Errorf("Closest for an ambiguous prefix = %q, want none", got)
	}
}
