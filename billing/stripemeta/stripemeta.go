// Package stripemeta builds and checks the metadata that billing attaches
// to Stripe objects, and names the keys it reads back from their events.
//
// Every Stripe create call of billing attaches metadata built here, so
// that Stripe's limits and our "no secrets, no extra PII" rule are
// enforced in one place. It depends on nothing of billing: a failure here
// is billing's own bug (a caller passed something that must never reach
// Stripe), so the errors are plain errors wrapping ErrInvalid, which
// billing.ErrorCode maps to INTERNAL. A billing method that forwards user
// text into metadata (a refund's reason detail, a product's features)
// validates that text first, or turns errors.Is(err, ErrInvalid) into
// billing.InvalidInput naming its input field, so that the client gets
// BAD_USER_INPUT.
//
// Error messages name the offending key, never a value: a refused value
// may be a secret or a card number, and error text ends up in logs.
package stripemeta

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	"billingapi/internal/pgtext"

	"github.com/google/uuid"
)

// ErrInvalid is wrapped by every error that metadata validation returns.
var ErrInvalid = errors.New("invalid metadata")

// Stripe's limits on metadata.
const (
	// MaxKeys is the most keys one Stripe object's metadata may hold.
	MaxKeys = 50
	// MaxKeyLen is the longest a metadata key may be, in characters.
	MaxKeyLen = 40
	// MaxValueLen is the longest a metadata value may be, in characters (runes).
	MaxValueLen = 500
)

// The metadata keys the product brief requires on Stripe objects.
const (
	KeyUserID       = "user_id"
	KeyWorkspaceID  = "workspace_id"
	KeyPurpose      = "purpose"
	KeyPlan         = "plan"
	KeyRefundedBy   = "refunded_by"
	KeyReasonDetail = "reason_detail"
)

type entry struct{ key, value string }

// Builder collects key/value pairs and reports every problem at Build.
//
// The zero value is ready to use. Problems do not stop the chain: Set
// records them, and Build returns all of them joined.
type Builder struct {
	entries []entry
	errs    []error
}

// New returns an empty Builder.
func New() *Builder {
	return &Builder{entries: make([]entry, 0, 4)}
}

// Set adds key with value; setting a key twice, or a key or value that
// breaks a metadata rule, makes Build fail.
func (b *Builder) Set(key, value string) *Builder {
	for _, e := range b.entries {
		if e.key == key {
			b.errs = append(b.errs, keyError(key, "is set more than once"))
			return b
		}
	}
	b.entries = append(b.entries, entry{key, value})
	b.errs = appendEntryErrors(b.errs, key, value)
	return b
}

// SetOptional adds key with value unless value is empty, in which case the key is left out.
func (b *Builder) SetOptional(key, value string) *Builder {
	if value == "" {
		return b
	}
	return b.Set(key, value)
}

// setID adds key with id's canonical text; the nil UUID is refused.
func (b *Builder) setID(key string, id uuid.UUID) *Builder {
	if id == uuid.Nil {
		b.errs = append(b.errs, keyError(key, "value is the nil UUID"))
		return b
	}
	return b.Set(key, id.String())
}

// Build returns a fresh map of the pairs set, or nil and errors.Join of
// every problem found, each wrapping ErrInvalid.
func (b *Builder) Build() (map[string]string, error) {
	var errs []error
	if n := len(b.entries); n > MaxKeys {
		errs = append(errs, tooManyKeysError(n))
	}
	errs = append(errs, b.errs...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	m := make(map[string]string, len(b.entries))
	for _, e := range b.entries {
		m[e.key] = e.value
	}
	return m, nil
}

// Validate checks an existing map against the rules the builder
// enforces and returns errors.Join of every problem, each wrapping ErrInvalid.
func Validate(m map[string]string) error {
	var errs []error
	if len(m) > MaxKeys {
		errs = append(errs, tooManyKeysError(len(m)))
	}
	for _, k := range slices.Sorted(maps.Keys(m)) { // sorted: stable messages
		errs = appendEntryErrors(errs, k, m[k])
	}
	return errors.Join(errs...)
}

// Customer returns the metadata of a Stripe Customer: user_id and workspace_id.
func Customer(userID string, workspaceID uuid.UUID) (map[string]string, error) {
	return New().
		Set(KeyUserID, userID).
		setID(KeyWorkspaceID, workspaceID).
		Build()
}

// PaymentIntent returns the metadata of a Stripe PaymentIntent: workspace_id, user_id and purpose.
func PaymentIntent(workspaceID uuid.UUID, userID, purpose string) (map[string]string, error) {
	return New().
		setID(KeyWorkspaceID, workspaceID).
		Set(KeyUserID, userID).
		Set(KeyPurpose, purpose).
		Build()
}

// CheckoutSession returns the metadata of a Stripe Checkout Session: workspace_id, user_id and plan.
func CheckoutSession(workspaceID uuid.UUID, userID, plan string) (map[string]string, error) {
	return New().
		setID(KeyWorkspaceID, workspaceID).
		Set(KeyUserID, userID).
		Set(KeyPlan, plan).
		Build()
}

// Subscription returns the metadata of a Stripe Subscription: workspace_id and plan.
func Subscription(workspaceID uuid.UUID, plan string) (map[string]string, error) {
	return New().
		setID(KeyWorkspaceID, workspaceID).
		Set(KeyPlan, plan).
		Build()
}

// Refund returns the metadata of a Stripe Refund: refunded_by, and reason_detail unless it is empty.
func Refund(refundedBy, reasonDetail string) (map[string]string, error) {
	return New().
		Set(KeyRefundedBy, refundedBy).
		SetOptional(KeyReasonDetail, reasonDetail).
		Build()
}

// --- errors ------------------------------------------------------------------

func tooManyKeysError(n int) error {
	return fmt.Errorf("%w: %d keys, at most %d allowed", ErrInvalid, n, MaxKeys)
}

func keyError(key, problem string) error {
	return fmt.Errorf("%w: key %s: %s", ErrInvalid, quoteKey(key), problem)
}

// quoteKey renders key for an error message: ASCII-quoted, cut
// when very long, and withheld when the key itself looks like a secret or
// a card number (someone passed a value as a key).
func quoteKey(key string) string {
	if looksLikeSecretValue(key) {
		return "[withheld]"
	}
	const show = MaxKeyLen + 8
	if utf8.RuneCountInString(key) > show {
		return fmt.Sprintf("%+q...", string([]rune(key)[:show]))
	}
	return fmt.Sprintf("%+q", key)
}

// appendEntryErrors appends one error per rule that key or value breaks.
func appendEntryErrors(errs []error, key, value string) []error {
	if key == "" {
		errs = append(errs, keyError(key, "is empty"))
	} else {
		if n := utf8.RuneCountInString(key); n > MaxKeyLen {
			errs = append(errs, keyError(key,
				fmt.Sprintf("is %d characters long, at most %d allowed", n, MaxKeyLen)))
		}
		if !isSnakeCase(key) {
			errs = append(errs, keyError(key, "is not snake_case (want ^[a-z][a-z0-9]*(_[a-z0-9]+)*$)"))
		}
		if term := sensitiveKeyTerm(key); term != "" {
			errs = append(errs, keyError(key,
				fmt.Sprintf("names sensitive data (%q): secrets and personal data stay out of Stripe metadata", term)))
		}
		if looksLikeSecretValue(key) {
			errs = append(errs, keyError(key, "looks like a secret or a card number"))
		}
	}
	switch {
	case value == "":
		errs = append(errs, keyError(key, "value is empty"))
	case pgtext.Check(value) != nil:
		// Stripe hands metadata back in every event about the object,
		// which our database must be able to store.
		errs = append(errs, keyError(key, "value "+pgtext.Check(value).Error()))
	default:
		if n := utf8.RuneCountInString(value); n > MaxValueLen {
			errs = append(errs, keyError(key,
				fmt.Sprintf("value is %d characters long, at most %d allowed", n, MaxValueLen)))
		}
	}
	if looksLikeSecretValue(value) && !(isIdentifierKey(key) && onlyDigits(value)) {
		errs = append(errs, keyError(key, "value looks like a secret or a card number (value withheld)"))
	}
	return errs
}

// isIdentifierKey reports whether key holds one of our identifiers (a
// user's token subject, a workspace id). Some identity providers issue
// 13-19 digit user ids, and one in ten of those passes the Luhn check:
// such a value is an id, not a card number.
func isIdentifierKey(key string) bool {
	return key == KeyUserID || key == KeyRefundedBy || strings.HasSuffix(key, "_id")
}

// onlyDigits reports whether s is a non-empty run of ASCII digits.
func onlyDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

// --- keys --------------------------------------------------------------------

// isSnakeCase reports whether key matches ^[a-z][a-z0-9]*(_[a-z0-9]+)*$.
func isSnakeCase(key string) bool {
	if key == "" || key[0] < 'a' || key[0] > 'z' || key[len(key)-1] == '_' {
		return false
	}
	for i := 1; i < len(key); i++ {
		switch c := key[i]; {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '_':
			if key[i-1] == '_' {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// sensitiveKeyTerms are refused anywhere in a key (ASCII case-insensitive).
// Terms written with an underscore also match with the underscore left out
// or replaced ("api_key", "apikey", "api-key").
var sensitiveKeyTerms = []string{
	"password", "passwd", "secret", "token",
	"api_key", "apikey", "private_key",
	"card_number", "cardnumber", "card_num",
	"cvc", "cvv", "cvv2",
	"ssn", "social_security", "iban", "account_number", "routing_number",
	"email", "phone", "address", "dob", "birth",
}

// sensitiveKeyWords are refused only as a whole word of the key: "pan"
// (primary account number) but not "span_id" or "japan".
var sensitiveKeyWords = []string{"pan"}

// sensitiveKeyTerm returns the sensitive term key contains, or "".
func sensitiveKeyTerm(key string) string {
	for _, t := range sensitiveKeyTerms {
		if containsTerm(key, t) {
			return t
		}
	}
	for _, w := range sensitiveKeyWords {
		if hasWord(key, w) {
			return w
		}
	}
	return ""
}

func isKeySeparator(c byte) bool { return c == '_' || c == '-' || c == '.' || c == ' ' }

func lowerASCII(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func isAlnumASCII(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// containsTerm reports whether key contains the lower-case term, ASCII
// case-insensitively; when term has an underscore, separators in key are
// ignored too (so "api_key" matches "apikey", "api-key" and "API_KEY").
func containsTerm(key, term string) bool {
	if !strings.Contains(term, "_") {
		return indexFoldASCII(key, term, 0) >= 0
	}
	for start := range len(key) {
		i, j := start, 0
		for j < len(term) {
			if term[j] == '_' {
				j++
				continue
			}
			if i == len(key) {
				break
			}
			if i > start && isKeySeparator(key[i]) {
				i++
				continue
			}
			if lowerASCII(key[i]) != term[j] {
				break
			}
			i++
			j++
		}
		if j == len(term) {
			return true
		}
	}
	return false
}

// hasWord reports whether the lower-case word is a whole word of key,
// ASCII case-insensitively; words are split at non-alphanumerics and at
// camelCase humps ("card_pan", "cardPan").
func hasWord(key, word string) bool {
	start := 0
	for i := 0; i <= len(key); i++ {
		sep := i < len(key) && !isAlnumASCII(key[i])
		hump := i > 0 && i < len(key) && key[i] >= 'A' && key[i] <= 'Z' && key[i-1] >= 'a' && key[i-1] <= 'z'
		if i < len(key) && !sep && !hump {
			continue
		}
		if i-start == len(word) && indexFoldASCII(key[start:i], word, 0) == 0 {
			return true
		}
		start = i
		if sep {
			start = i + 1
		}
	}
	return false
}

// --- values ------------------------------------------------------------------

// looksLikeSecretValue reports whether s looks like a Stripe secret,
// restricted or webhook-signing key, a PEM block, a JWT, or a card number.
func looksLikeSecretValue(s string) bool {
	return hasStripeSecretPrefix(s) ||
		indexFoldASCII(s, "-----begin", 0) >= 0 ||
		hasJWT(s) ||
		hasCardNumber(s)
}

// stripeSecretPrefixes start Stripe secret keys, restricted keys and
// webhook signing secrets. Publishable keys (pk_) are public and allowed.
var stripeSecretPrefixes = []string{"sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_"}

// hasStripeSecretPrefix reports whether s starts with a Stripe secret
// prefix, or has one after a non-word character ("Bearer sk_live_...").
// A prefix glued to a word ("disk_test_1") does not count.
func hasStripeSecretPrefix(s string) bool {
	for _, p := range stripeSecretPrefixes {
		for from := 0; ; {
			i := indexFoldASCII(s, p, from)
			if i < 0 {
				break
			}
			if i == 0 || !(isAlnumASCII(s[i-1]) || s[i-1] == '_') {
				return true
			}
			from = i + 1
		}
	}
	return false
}

// indexFoldASCII returns the index of the lower-case ASCII sub in s at or
// after from, ignoring ASCII case, or -1.
func indexFoldASCII(s, sub string, from int) int {
	for i := from; i+len(sub) <= len(s); i++ {
		k := 0
		for k < len(sub) && lowerASCII(s[i+k]) == sub[k] {
			k++
		}
		if k == len(sub) {
			return i
		}
	}
	return -1
}

func isBase64URL(c byte) bool { return isAlnumASCII(c) || c == '-' || c == '_' }

// hasJWT reports whether s contains something shaped like a JWT (or JWE):
// base64url segments joined by dots, the first starting with "eyJ" (the
// encoding of `{"`), at least three segments, the last possibly empty (an
// unsigned token).
func hasJWT(s string) bool {
	for from := 0; ; {
		i := strings.Index(s[from:], "eyJ")
		if i < 0 {
			return false
		}
		i += from
		j := i + 3
		for j < len(s) && isBase64URL(s[j]) {
			j++
		}
		if j < len(s) && s[j] == '.' {
			k := j + 1
			for k < len(s) && isBase64URL(s[k]) {
				k++
			}
			if k > j+1 && k < len(s) && s[k] == '.' {
				return true
			}
		}
		from = j // any later "eyJ" of this segment ends at the same place
	}
}

const (
	minCardDigits = 13
	maxCardDigits = 19
	// maxCardGap is the longest run of spaces and dashes allowed between
	// two digit groups of one card number ("4242 4242", "4242 - 4242").
	maxCardGap = 3
)

type digitRun struct{ start, end int }

// hasCardNumber reports whether s contains 13 to 19 digits, possibly
// split into groups by short runs of spaces or dashes, that pass the Luhn
// check. Candidates are whole digit groups or consecutive groups of one
// run ("4242 4242 4242 4242 12 27" holds a card); a longer unbroken digit
// run is not split (a 20-digit id is no card). Canonical UUIDs are skipped:
// their all-digit groups would otherwise pass Luhn once in ten.
func hasCardNumber(s string) bool {
	var buf [8]digitRun
	runs := buf[:0]
	for i := 0; i < len(s); {
		if isHexDigit(s[i]) && (i == 0 || !isAlnumASCII(s[i-1])) && isUUIDAt(s, i) {
			if luhnInRuns(s, runs) {
				return true
			}
			runs = runs[:0]
			i += 36
			continue
		}
		if !isDigit(s[i]) {
			i++
			continue
		}
		start := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		if n := len(runs); n > 0 && !isCardGap(s[runs[n-1].end:start]) {
			if luhnInRuns(s, runs) {
				return true
			}
			runs = runs[:0]
		}
		runs = append(runs, digitRun{start, i})
	}
	return luhnInRuns(s, runs)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isHexDigit(c byte) bool {
	return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isCardGap(gap string) bool {
	if len(gap) == 0 || len(gap) > maxCardGap {
		return false
	}
	for i := 0; i < len(gap); i++ {
		if gap[i] != ' ' && gap[i] != '-' {
			return false
		}
	}
	return true
}

// isUUIDAt reports whether a canonical 8-4-4-4-12 UUID starts at s[i] and
// is not followed by another alphanumeric.
func isUUIDAt(s string, i int) bool {
	if i+36 > len(s) || (i+36 < len(s) && isAlnumASCII(s[i+36])) {
		return false
	}
	for k := 0; k < 36; k++ {
		c := s[i+k]
		switch k {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !isHexDigit(c) {
				return false
			}
		}
	}
	return true
}

// luhnInRuns reports whether consecutive runs holding 13 to 19 digits in
// all pass the Luhn check.
func luhnInRuns(s string, runs []digitRun) bool {
	for i := range runs {
		total := 0
		for j := i; j < len(runs); j++ {
			total += runs[j].end - runs[j].start
			if total > maxCardDigits {
				break
			}
			if total >= minCardDigits && luhnValid(s, runs[i:j+1]) {
				return true
			}
		}
	}
	return false
}

// luhnValid runs the Luhn check over the digits of runs, in order.
func luhnValid(s string, runs []digitRun) bool {
	sum, double := 0, false
	for r := len(runs) - 1; r >= 0; r-- {
		for p := runs[r].end - 1; p >= runs[r].start; p-- {
			d := int(s[p] - '0')
			if double {
				d *= 2
				if d > 9 {
					d -= 9
				}
			}
			sum += d
			double = !double
		}
	}
	return sum%10 == 0
}
