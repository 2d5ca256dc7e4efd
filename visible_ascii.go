package manus

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// visibleASCIIProblem says what in value is not *VSCHAR (RFC 6749 appendix
// A), by kind and position, never the value; "" when nothing is. It catches
// what copying adds unseen, which Manus would answer INVALID_CLIENT.
func visibleASCIIProblem(value string) string {
	if problem := edgeSpaceProblem(value); problem != "" {
		return problem
	}
	position := 0
	for offset, r := range value {
		position++
		if r == utf8.RuneError && !validRuneAt(value, offset) {
			return fmt.Sprintf("is not valid UTF-8 at character %d", position)
		}
		if r < 0x20 || r > 0x7e {
			return fmt.Sprintf("contains %s at character %d of %d", describeCharacter(r), position, utf8.RuneCountInString(value))
		}
	}
	return ""
}

// edgeSpaceProblem reports white space at either end, in an operator's words.
func edgeSpaceProblem(value string) string {
	if value == "" {
		return ""
	}
	first, _ := utf8.DecodeRuneInString(value)
	last, _ := utf8.DecodeLastRuneInString(value)
	if isASCIISpace(first) || isASCIISpace(last) {
		return "must not start or end with whitespace (check for a pasted newline or a file's final line break)"
	}
	return ""
}

func isASCIISpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f'
}

func validRuneAt(value string, offset int) bool {
	r, size := utf8.DecodeRuneInString(value[offset:])
	return r != utf8.RuneError || size > 1
}

// describeCharacter names a character by kind; only invisible ones by code
// point, as a visible one may be part of the secret.
func describeCharacter(r rune) string {
	switch {
	case r == '\uFEFF':
		return "a byte-order mark (U+FEFF, as saved by some Windows editors)"
	case r == '\u200B' || r == '\u200C' || r == '\u200D' || r == '\u2060':
		return fmt.Sprintf("a zero-width character (%U)", r)
	case r == '\u00A0' || r == '\u202F' || r == '\u2007':
		return fmt.Sprintf("a non-breaking space (%U)", r)
	case unicode.IsControl(r):
		return fmt.Sprintf("a control character (%U%s)", r, controlName(r))
	case unicode.Is(unicode.Cf, r):
		return fmt.Sprintf("an invisible format character (%U)", r)
	case unicode.IsSpace(r) || unicode.Is(unicode.Zs, r):
		return fmt.Sprintf("a non-ASCII space (%U)", r)
	case !unicode.IsPrint(r):
		return fmt.Sprintf("a non-printing character (%U)", r)
	}
	return "a non-ASCII character"
}

func controlName(r rune) string {
	switch r {
	case '\n':
		return ", line feed"
	case '\r':
		return ", carriage return"
	case '\t':
		return ", tab"
	}
	return ""
}
