package manus

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// checkVisibleASCII refuses a value that holds anything but visible ASCII
// and inner spaces, naming the field, the kind of character and its
// position, never the value itself.
//
// The rule is RFC 6749 appendix A.1 and A.2: client_id and client_secret are
// *VSCHAR, the characters U+0020 to U+007E. The vendor page fixes no
// narrower set (its examples are tm_ plus letters, digits and _ for the ID,
// and 64 hex digits for the secret, but it does not promise either shape),
// so a stricter set could refuse a valid credential; VSCHAR cannot. What it
// does refuse is what copying credentials around adds without anyone seeing
// it: a byte-order mark from a Windows editor, a zero-width space from a chat
// tool, a non-breaking space from a document, a pasted newline. Sent to
// Manus those come back as "INVALID_CLIENT: unknown or deleted", the wrong
// diagnosis. base_url gets the same check, since an invisible character in a
// host name comes back as a DNS failure.
func checkVisibleASCII(field, value string) error {
	if value == "" {
		return nil
	}
	if problem := edgeSpaceProblem(value); problem != "" {
		return &fieldError{field, problem}
	}
	position := 0
	for offset, r := range value {
		position++
		if r == utf8.RuneError && !validRuneAt(value, offset) {
			return &fieldError{field, fmt.Sprintf("is not valid UTF-8 at character %d", position)}
		}
		if r >= 0x20 && r <= 0x7e {
			continue
		}
		return &fieldError{field, fmt.Sprintf("contains %s at character %d of %d; %s",
			describeCharacter(r), position, utf8.RuneCountInString(value), asciiRule(field))}
	}
	return nil
}

func asciiRule(field string) string {
	if field == "base_url" {
		return "write the URL in plain ASCII (an internationalised host name in its xn-- form)"
	}
	return "Manus credentials are visible ASCII (RFC 6749 appendix A): retype the value, or remove the character from the file it was read from"
}

// edgeSpaceProblem reports a space, tab or line break at either end, the
// commonest paste mistake, in the words an operator looks for.
func edgeSpaceProblem(value string) string {
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

// describeCharacter names a refused character by kind. Invisible characters
// are named with their code point, which says nothing about the secret; a
// visible non-ASCII character is not, since it may be part of it.
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
