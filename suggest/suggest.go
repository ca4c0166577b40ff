// Package suggest finds the word a user probably meant when they typed one
// that is not known: a command, a flag, a model id, a job id. It imports
// nothing of comfybatch, so the command line, the runner and the manifest
// checks can all share one idea of what a typo is.
package suggest

import (
	"strings"
	"unicode/utf8"
)

// Distance is the number of single-rune edits (insert, delete, substitute,
// or swap two neighbours) that turn a into b, compared without regard to
// case: the optimal string alignment distance. A swap counts once because
// "stauts" for "status" is one slip of the fingers, not two.
func Distance(a, b string) int {
	ra, rb := []rune(strings.ToLower(a)), []rune(strings.ToLower(b))
	// Three rows are enough: a swap looks back two rows.
	prev2, prev, cur := make([]int, len(rb)+1), make([]int, len(rb)+1), make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}

// Limit is how many edits still make a typo of a word n runes long: one for
// words of up to four runes, two for longer ones. More would match words
// that merely look alike ("plan" and "run" are three edits apart).
func Limit(n int) int {
	if n <= 4 {
		return 1
	}
	return 2
}

// Closest returns the candidate the user most probably meant by word: the
// nearest one within Limit of the longer of the two, or else the only
// candidate that word, at least three runes long, begins ("stat" for
// "status"). It reports false when there is none, when word is itself a
// candidate, or when two candidates are equally near: a suggestion that
// may be wrong is worse than none.
func Closest(word string, candidates []string) (string, bool) {
	best, bestD, tie := "", -1, false
	var prefixed []string
	for _, c := range candidates {
		if c == word {
			return "", false
		}
		d := Distance(word, c)
		if d > Limit(max(utf8.RuneCountInString(word), utf8.RuneCountInString(c))) {
			if utf8.RuneCountInString(word) >= 3 && strings.HasPrefix(strings.ToLower(c), strings.ToLower(word)) {
				prefixed = append(prefixed, c)
			}
			continue
		}
		switch {
		case bestD < 0 || d < bestD:
			best, bestD, tie = c, d, false
		case d == bestD && c != best:
			tie = true
		}
	}
	switch {
	case bestD >= 0 && !tie:
		return best, true
	case bestD < 0 && len(prefixed) == 1:
		return prefixed[0], true
	}
	return "", false
}
