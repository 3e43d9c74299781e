// Package pgtext says which strings PostgreSQL can store as text, so that
// every door (GraphQL arguments, token claims, Stripe metadata) refuses
// the others before they reach the database, where the driver's error
// would be answered INTERNAL.
//
// A PostgreSQL text value in a UTF8 database (ours: the migrations create
// none other) refuses exactly two things: the NUL character, which no
// text type stores, and byte sequences that are not UTF-8 (surrogates,
// code points above U+10FFFF, overlong forms). Go's utf8.ValidString
// refuses the same sequences; everything else, other control characters
// and noncharacters included, is stored as given.
package pgtext

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// Why Check refuses a string.
var (
	ErrNUL         = errors.New("contains the NUL character (U+0000)")
	ErrInvalidUTF8 = errors.New("is not valid UTF-8")
)

// Check returns nil when PostgreSQL can store s as text, ErrNUL when s
// holds the NUL character and ErrInvalidUTF8 when it is not valid UTF-8.
func Check(s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return ErrNUL
	}
	if !utf8.ValidString(s) {
		return ErrInvalidUTF8
	}
	return nil
}

// Storable reports whether PostgreSQL can store s as text.
func Storable(s string) bool { return Check(s) == nil }

// Clip returns s cut to at most n bytes without splitting a UTF-8
// character, so that valid text stays valid: a column's limit (ent's
// MaxLen counts bytes), a log field or a metric label can be met without
// making a string PostgreSQL would refuse.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
