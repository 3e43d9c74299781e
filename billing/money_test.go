package billing

import (
	"strings"
	"testing"
)

func TestValidatePaymentAmount(t *testing.T) {
	cases := []struct {
		amount   int64
		currency string
		ok       bool
	}{
		{0, "usd", false}, {-1, "usd", false}, {49, "usd", false}, {50, "usd", true},
		{MaxAmount, "usd", true}, {MaxAmount + 1, "usd", false}, {1 << 33, "usd", false},
		{29, "gbp", false}, {30, "gbp", true},
		{49, "jpy", false}, {50, "jpy", true}, {699, "krw", false}, {700, "krw", true},
		{100, "xyz", false}, {100, "USD", false}, // currencies are normalized before
	}
	for _, tc := range cases {
		err := ValidatePaymentAmount("amount", tc.amount, tc.currency)
		if (err == nil) != tc.ok {
			t.Errorf("ValidatePaymentAmount(%d, %s) = %v, want ok %t", tc.amount, tc.currency, err, tc.ok)
		}
		if err != nil && ErrorCode(err) != CodeBadUserInput {
			t.Errorf("ValidatePaymentAmount(%d, %s) code = %s", tc.amount, tc.currency, ErrorCode(err))
		}
	}
}

func TestFormatAmount(t *testing.T) {
	cases := map[string]string{
		FormatAmount(1999, "usd"):      "19.99 USD",
		FormatAmount(50, "eur"):        "0.50 EUR",
		FormatAmount(500, "jpy"):       "500 JPY",
		FormatAmount(-250, "usd"):      "-2.50 USD",
		FormatAmount(MaxAmount, "krw"): "99999999 KRW",
	}
	for got, want := range cases {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

// FuzzAmountValidator checks that the validator never panics and accepts
// exactly the amounts between the currency's minimum and Stripe's maximum.
func FuzzAmountValidator(f *testing.F) {
	for _, seed := range []struct {
		amount   int64
		currency string
	}{{50, "usd"}, {0, "jpy"}, {-1, "eur"}, {MaxAmount, "krw"}, {1 << 62, "usd"}, {100, " UsD "}, {100, "??"}} {
		f.Add(seed.amount, seed.currency)
	}
	f.Fuzz(func(t *testing.T, amount int64, currency string) {
		cur, err := NormalizeCurrency("currency", currency)
		if err != nil {
			if ErrorCode(err) != CodeBadUserInput {
				t.Fatalf("NormalizeCurrency(%q) code %s", currency, ErrorCode(err))
			}
			return
		}
		if cur != strings.ToLower(strings.TrimSpace(currency)) {
			t.Fatalf("NormalizeCurrency(%q) = %q", currency, cur)
		}
		err = ValidatePaymentAmount("amount", amount, cur)
		want := amount >= currencies[cur].minCharge && amount <= MaxAmount
		if (err == nil) != want {
			t.Fatalf("ValidatePaymentAmount(%d, %s) = %v, want ok %t", amount, cur, err, want)
		}
		if err == nil && ValidatePriceAmount("unitAmount", amount, cur) != nil {
			t.Fatalf("a valid charge %d %s is not a valid price", amount, cur)
		}
	})
}
