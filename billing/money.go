package billing

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// MaxAmount is Stripe's largest amount, in the smallest currency unit
// (eight digits: 999,999.99 USD, or ¥99,999,999).
const MaxAmount = 99_999_999

// currencyRule is what we know of one supported currency.
type currencyRule struct {
	// zeroDecimal currencies have no minor unit: amounts are whole yen, won.
	zeroDecimal bool
	// minCharge is Stripe's minimum charge, in the smallest unit.
	minCharge int64
}

// currencies is the set of currencies we accept, with Stripe's documented
// minimum charge amounts. KRW is not in Stripe's table; its minimum here
// is the won equivalent of Stripe's usual US$0.50 floor, rounded up.
var currencies = map[string]currencyRule{
	"usd": {minCharge: 50}, "aed": {minCharge: 200}, "aud": {minCharge: 50},
	"bgn": {minCharge: 100}, "brl": {minCharge: 50}, "cad": {minCharge: 50},
	"chf": {minCharge: 50}, "czk": {minCharge: 1500}, "dkk": {minCharge: 250},
	"eur": {minCharge: 50}, "gbp": {minCharge: 30}, "hkd": {minCharge: 400},
	"huf": {minCharge: 17500}, "inr": {minCharge: 50}, "mxn": {minCharge: 1000},
	"myr": {minCharge: 200}, "nok": {minCharge: 300}, "nzd": {minCharge: 50},
	"pln": {minCharge: 200}, "ron": {minCharge: 200}, "sek": {minCharge: 300},
	"sgd": {minCharge: 50}, "thb": {minCharge: 1000},
	"jpy": {zeroDecimal: true, minCharge: 50},
	"krw": {zeroDecimal: true, minCharge: 700},
}

// NormalizeCurrency returns the lowercase ISO code of a supported currency,
// or BAD_USER_INPUT.
func NormalizeCurrency(field, code string) (string, error) {
	c := strings.ToLower(strings.TrimSpace(code))
	if _, ok := currencies[c]; !ok {
		return "", InvalidInput(field, "Unsupported currency. Use a three-letter ISO code such as USD, EUR or JPY.")
	}
	return c, nil
}

// IsZeroDecimal reports whether amounts in currency are whole units.
func IsZeroDecimal(currency string) bool { return currencies[strings.ToLower(currency)].zeroDecimal }

// ValidatePriceAmount checks a catalog price: a positive integer no larger
// than MaxAmount, in the smallest unit of a supported currency.
func ValidatePriceAmount(field string, amount int64, currency string) error {
	if _, ok := currencies[currency]; !ok {
		return InvalidInput("currency", "Unsupported currency.")
	}
	if amount <= 0 {
		return InvalidInput(field, "Amount must be a positive whole number in the currency's smallest unit.")
	}
	if amount > MaxAmount {
		return InvalidInput(field, "Amount is larger than the payment provider allows.")
	}
	return nil
}

// lookupKeyPattern is the lookup keys we accept: what Stripe allows, minus
// characters that would need escaping in logs and cache keys.
var lookupKeyPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,200}$`)

// ValidateLookupKey returns BAD_USER_INPUT unless key is 1 to 200
// characters of letters, digits, '_', '.' or '-'.
func ValidateLookupKey(field, key string) error {
	if !lookupKeyPattern.MatchString(key) {
		return InvalidInput(field, "Lookup key must be 1 to 200 letters, digits, '_', '.' or '-'.")
	}
	return nil
}

// ValidatePaymentAmount checks a charge: a whole number in the smallest
// unit of a supported (normalized) currency, at least Stripe's minimum
// charge and at most MaxAmount.
func ValidatePaymentAmount(field string, amount int64, currency string) error {
	rule, ok := currencies[currency]
	if !ok {
		return InvalidInput("currency", "Unsupported currency.")
	}
	switch {
	case amount <= 0:
		return InvalidInput(field, "Amount must be a positive whole number in the currency's smallest unit (cents; whole yen for JPY).")
	case amount < rule.minCharge:
		return InvalidInput(field, "Amount is below the minimum charge of "+FormatAmount(rule.minCharge, currency)+".")
	case amount > MaxAmount:
		return InvalidInput(field, "Amount is above the maximum charge of "+FormatAmount(MaxAmount, currency)+".")
	}
	return nil
}

// FormatAmount renders an amount in the smallest unit as major units with
// the currency code, using integer arithmetic only: 1999 usd is
// "19.99 USD", 500 jpy is "500 JPY".
func FormatAmount(amount int64, currency string) string {
	code := strings.ToUpper(currency)
	if IsZeroDecimal(currency) {
		return strconv.FormatInt(amount, 10) + " " + code
	}
	sign := ""
	if amount < 0 {
		sign, amount = "-", -amount
	}
	return fmt.Sprintf("%s%d.%02d %s", sign, amount/100, amount%100, code)
}
