package stripemeta

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/uuid"
)

// snakeCaseKey is the key rule as the brief writes it; the implementation
// does not use a regexp, so the tests check it against this one.
var snakeCaseKey = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

const (
	testWorkspace = "6f1c2a7e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	testJWT       = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
	testPEM       = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7Vx\n-----END RSA PRIVATE KEY-----"
)

// manyKeys returns n valid pairs k00..k(n-1).
func manyKeys(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprintf("k%02d", i)] = "v"
	}
	return m
}

func with(m map[string]string, k, v string) map[string]string {
	m = maps.Clone(m)
	m[k] = v
	return m
}

func TestValidateMetadata(t *testing.T) {
	key40 := "k" + strings.Repeat("_a", 19) + "b" // 40 characters
	key41 := key40 + "c"
	if len(key40) != 40 || len(key41) != 41 {
		t.Fatal("bad fixture lengths")
	}

	tests := []struct {
		name string
		m    map[string]string
		// wantKey is the key the error must name ("" for a valid map or a
		// map-wide problem); hidden is a value the error must not contain.
		wantErr bool
		wantKey string
		hidden  string
	}{
		// Valid maps.
		{name: "nil map", m: nil},
		{name: "empty map", m: map[string]string{}},
		{name: "typical", m: map[string]string{"user_id": "auth0|5f7c8ec7c33c6c004bbafe82", "workspace_id": testWorkspace, "plan": "pro"}},
		{name: "key of exactly 40 characters", m: map[string]string{key40: "v"}},
		{name: "digits after first letter and after underscores", m: map[string]string{"a1_2b_c3": "v"}},
		{name: "value of exactly 500 ASCII characters", m: map[string]string{"note": strings.Repeat("a", 500)}},
		{name: "value of exactly 500 two-byte runes", m: map[string]string{"note": strings.Repeat("é", 500)}},
		{name: "value of exactly 500 four-byte runes", m: map[string]string{"note": strings.Repeat("😀", 500)}},
		{name: "exactly 50 keys", m: manyKeys(50)},
		{name: "16-digit non-Luhn order id", m: map[string]string{"order_id": "4242424242424241"}},
		{name: "12-digit Luhn-valid number is too short for a card", m: map[string]string{"ref": "100000000008"}},
		{name: "unbroken 20-digit id is not split into a card", m: map[string]string{"ref": "42424242424242420000"}},
		{name: "all-digit UUID whose groups pass Luhn", m: map[string]string{"workspace_id": "12345678-1234-4234-8234-123456789008"}},
		{name: "pan inside a word is not a PAN", m: map[string]string{"span_id": "s", "company": "Japan Ltd"}},
		{name: "secret prefix glued to a word", m: map[string]string{"group": "disk_test_1", "kind": "risk_live_run"}},
		{name: "publishable key", m: map[string]string{"pk": "pk_live_51Habc"}},
		{name: "eyJ that is no JWT", m: map[string]string{"note": "eyJust kidding. really."}},
		{name: "date and phone-like digits", m: map[string]string{"note": "2024-01-15 call 555-123-4567"}},

		// Keys.
		{name: "empty key", m: map[string]string{"": "v"}, wantErr: true, wantKey: `""`},
		{name: "key of 41 characters", m: map[string]string{key41: "v"}, wantErr: true, wantKey: key41},
		{name: "camelCase key", m: map[string]string{"userId": "v"}, wantErr: true, wantKey: "userId"},
		{name: "kebab-case key", m: map[string]string{"user-id": "v"}, wantErr: true, wantKey: "user-id"},
		{name: "upper-case key", m: map[string]string{"USER_ID": "v"}, wantErr: true, wantKey: "USER_ID"},
		{name: "leading digit", m: map[string]string{"1user": "v"}, wantErr: true, wantKey: "1user"},
		{name: "leading underscore", m: map[string]string{"_user": "v"}, wantErr: true, wantKey: "_user"},
		{name: "double underscore", m: map[string]string{"user__id": "v"}, wantErr: true, wantKey: "user__id"},
		{name: "trailing underscore", m: map[string]string{"user_": "v"}, wantErr: true, wantKey: "user_"},
		{name: "space in key", m: map[string]string{"user id": "v"}, wantErr: true, wantKey: "user id"},
		{name: "Stripe brackets in key", m: map[string]string{"a[b]": "v"}, wantErr: true, wantKey: "a[b]"},
		{name: "non-ASCII key", m: map[string]string{"ünit": "v"}, wantErr: true, wantKey: `\u00fcnit`},

		// Sensitive key families.
		{name: "password", m: map[string]string{"password": "v"}, wantErr: true, wantKey: "password"},
		{name: "passwd", m: map[string]string{"db_passwd": "v"}, wantErr: true, wantKey: "db_passwd"},
		{name: "secret", m: map[string]string{"client_secret": "v"}, wantErr: true, wantKey: "client_secret"},
		{name: "token", m: map[string]string{"access_token": "v"}, wantErr: true, wantKey: "access_token"},
		{name: "api_key", m: map[string]string{"stripe_api_key": "v"}, wantErr: true, wantKey: "stripe_api_key"},
		{name: "apikey", m: map[string]string{"apikey": "v"}, wantErr: true, wantKey: "apikey"},
		{name: "private_key", m: map[string]string{"private_key_id": "v"}, wantErr: true, wantKey: "private_key_id"},
		{name: "privatekey without underscore", m: map[string]string{"privatekey": "v"}, wantErr: true, wantKey: "privatekey"},
		{name: "card_number", m: map[string]string{"card_number": "v"}, wantErr: true, wantKey: "card_number"},
		{name: "cardnumber", m: map[string]string{"cardnumber": "v"}, wantErr: true, wantKey: "cardnumber"},
		{name: "card_num", m: map[string]string{"card_num": "v"}, wantErr: true, wantKey: "card_num"},
		{name: "pan as a whole word", m: map[string]string{"pan": "v"}, wantErr: true, wantKey: "pan"},
		{name: "pan as the last word", m: map[string]string{"card_pan": "v"}, wantErr: true, wantKey: "card_pan"},
		{name: "cvc", m: map[string]string{"cvc": "v"}, wantErr: true, wantKey: "cvc"},
		{name: "cvv", m: map[string]string{"card_cvv": "v"}, wantErr: true, wantKey: "card_cvv"},
		{name: "cvv2", m: map[string]string{"cvv2": "v"}, wantErr: true, wantKey: "cvv2"},
		{name: "ssn", m: map[string]string{"ssn_last4": "v"}, wantErr: true, wantKey: "ssn_last4"},
		{name: "social_security", m: map[string]string{"social_security_no": "v"}, wantErr: true, wantKey: "social_security_no"},
		{name: "iban", m: map[string]string{"iban": "v"}, wantErr: true, wantKey: "iban"},
		{name: "account_number", m: map[string]string{"bank_account_number": "v"}, wantErr: true, wantKey: "bank_account_number"},
		{name: "routing_number", m: map[string]string{"routing_number": "v"}, wantErr: true, wantKey: "routing_number"},
		{name: "email", m: map[string]string{"billing_email": "v"}, wantErr: true, wantKey: "billing_email"},
		{name: "phone", m: map[string]string{"phone_number": "v"}, wantErr: true, wantKey: "phone_number"},
		{name: "address", m: map[string]string{"address_line1": "v"}, wantErr: true, wantKey: "address_line1"},
		{name: "dob", m: map[string]string{"dob": "v"}, wantErr: true, wantKey: "dob"},
		{name: "birth", m: map[string]string{"date_of_birth": "v"}, wantErr: true, wantKey: "date_of_birth"},

		// Values.
		{name: "empty value", m: map[string]string{"plan": ""}, wantErr: true, wantKey: "plan"},
		{name: "invalid UTF-8 value", m: map[string]string{"note": "ok\xff\xfe"}, wantErr: true, wantKey: "note"},
		{name: "NUL in a value", m: map[string]string{"note": "ok\x00"}, wantErr: true, wantKey: "note"},
		{name: "value of 501 ASCII characters", m: map[string]string{"note": strings.Repeat("a", 501)}, wantErr: true, wantKey: "note"},
		{name: "value of 501 two-byte runes", m: map[string]string{"note": strings.Repeat("é", 501)}, wantErr: true, wantKey: "note"},
		{name: "value of 501 four-byte runes", m: map[string]string{"note": strings.Repeat("😀", 501)}, wantErr: true, wantKey: "note"},
		{name: "51 keys", m: manyKeys(51), wantErr: true},

		// Secret-looking values.
		{name: "Luhn-valid card", m: map[string]string{"ref": "4242424242424242"}, wantErr: true, wantKey: "ref", hidden: "4242424242424242"},
		{name: "Luhn-valid card with spaces", m: map[string]string{"ref": "4242 4242 4242 4242"}, wantErr: true, wantKey: "ref", hidden: "4242 4242 4242 4242"},
		{name: "Luhn-valid card with dashes in text", m: map[string]string{"ref": "card 4000-0566-5566-5556 exp 12/27"}, wantErr: true, wantKey: "ref", hidden: "4000-0566-5566-5556"},
		{name: "Luhn-valid card followed by expiry digits", m: map[string]string{"ref": "4242 4242 4242 4242 12 27"}, wantErr: true, wantKey: "ref", hidden: "4242 4242 4242 4242"},
		{name: "15-digit Amex", m: map[string]string{"ref": "378282246310005"}, wantErr: true, wantKey: "ref", hidden: "378282246310005"},
		{name: "sk_live_ value", m: map[string]string{"cfg": "sk_live_51HxYzAbCdEf"}, wantErr: true, wantKey: "cfg", hidden: "sk_live_51HxYzAbCdEf"},
		{name: "sk_test_ value", m: map[string]string{"cfg": "sk_test_51HxYzAbCdEf"}, wantErr: true, wantKey: "cfg", hidden: "sk_test_51HxYzAbCdEf"},
		{name: "rk_live_ value", m: map[string]string{"cfg": "rk_live_51HxYzAbCdEf"}, wantErr: true, wantKey: "cfg", hidden: "rk_live_51HxYzAbCdEf"},
		{name: "rk_test_ value", m: map[string]string{"cfg": "rk_test_51HxYzAbCdEf"}, wantErr: true, wantKey: "cfg", hidden: "rk_test_51HxYzAbCdEf"},
		{name: "whsec_ value", m: map[string]string{"cfg": "whsec_AbCdEf0123456789"}, wantErr: true, wantKey: "cfg", hidden: "whsec_AbCdEf0123456789"},
		{name: "secret key inside text", m: map[string]string{"note": "Bearer sk_live_51HxYzAbCdEf"}, wantErr: true, wantKey: "note", hidden: "sk_live_51HxYzAbCdEf"},
		{name: "JWT value", m: map[string]string{"note": testJWT}, wantErr: true, wantKey: "note", hidden: testJWT[:40]},
		{name: "unsigned JWT value", m: map[string]string{"note": "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0."}, wantErr: true, wantKey: "note", hidden: "eyJhbGciOiJub25lIn0"},
		{name: "PEM value", m: map[string]string{"note": testPEM}, wantErr: true, wantKey: "note", hidden: "MIIEowIBAAKCAQEA7Vx"},
		{name: "key that is a card number is withheld", m: map[string]string{"a4242424242424242": "v"}, wantErr: true, hidden: "4242424242424242"},
		{name: "bad entry among good ones", m: with(manyKeys(10), "k03", "sk_live_abc"), wantErr: true, wantKey: "k03", hidden: "sk_live_abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.m)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("ValidateMetadata: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("ValidateMetadata accepted an invalid map")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
			}
			msg := err.Error()
			if tt.wantKey != "" && !strings.Contains(msg, tt.wantKey) {
				t.Errorf("error %q does not name key %q", msg, tt.wantKey)
			}
			if tt.hidden != "" && strings.Contains(msg, tt.hidden) {
				t.Errorf("error %q echoes the refused value", msg)
			}
		})
	}
}

// TestValidateMetadataReportsEveryProblem: one call names every bad key,
// each problem wrapping ErrInvalid.
func TestValidateMetadataReportsEveryProblem(t *testing.T) {
	err := Validate(map[string]string{"userId": "u", "plan": "", "ok": "fine"})
	errs := joined(t, err)
	if len(errs) != 2 {
		t.Fatalf("got %d problems, want 2: %v", len(errs), err)
	}
	for _, e := range errs {
		if !errors.Is(e, ErrInvalid) {
			t.Errorf("problem %v does not wrap ErrInvalid", e)
		}
	}
	if msg := err.Error(); !strings.Contains(msg, `"userId"`) || !strings.Contains(msg, `"plan"`) || strings.Contains(msg, `"ok"`) {
		t.Errorf("error %q should name userId and plan only", msg)
	}
}

func TestMetadataErrorMessagesAreBounded(t *testing.T) {
	long := strings.Repeat("k", 10000)
	err := Validate(map[string]string{long: strings.Repeat("v", 10000)})
	if err == nil {
		t.Fatal("accepted a 10000-character key")
	}
	if n := len(err.Error()); n > 1000 {
		t.Errorf("error message is %d bytes; a long key must be cut", n)
	}
}

func joined(t *testing.T, err error) []error {
	t.Helper()
	if err == nil {
		t.Fatal("want an error")
	}
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	return j.Unwrap()
}

func TestMetadataBuilder(t *testing.T) {
	t.Run("valid", func(t *testing.T) {
		m, err := New().Set("user_id", "u1").Set("plan", "pro").Build()
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]string{"user_id": "u1", "plan": "pro"}; !maps.Equal(m, want) {
			t.Errorf("Build = %v, want %v", m, want)
		}
	})

	t.Run("zero value", func(t *testing.T) {
		var b Builder
		m, err := b.Set("plan", "pro").Build()
		if err != nil || !maps.Equal(m, map[string]string{"plan": "pro"}) {
			t.Errorf("Build = %v, %v", m, err)
		}
	})

	t.Run("empty builder", func(t *testing.T) {
		m, err := New().Build()
		if err != nil || m == nil || len(m) != 0 {
			t.Errorf("Build = %#v, %v; want an empty non-nil map", m, err)
		}
	})

	t.Run("aggregates every problem", func(t *testing.T) {
		m, err := New().
			Set("userId", "u1").
			Set("plan", "").
			Set("note", "fine").
			Build()
		if m != nil {
			t.Errorf("Build returned a map %v with an error", m)
		}
		errs := joined(t, err)
		if len(errs) != 2 {
			t.Fatalf("got %d problems, want 2: %v", len(errs), err)
		}
		for _, e := range errs {
			if !errors.Is(e, ErrInvalid) {
				t.Errorf("problem %v does not wrap ErrInvalid", e)
			}
		}
		if !errors.Is(err, ErrInvalid) {
			t.Error("joined error does not wrap ErrInvalid")
		}
		if msg := err.Error(); !strings.Contains(msg, `"userId"`) || !strings.Contains(msg, `"plan"`) {
			t.Errorf("error %q should name userId and plan", msg)
		}
	})

	t.Run("duplicate key", func(t *testing.T) {
		m, err := New().Set("plan", "pro").Set("plan", "second-value-xyz").Build()
		if err == nil || m != nil {
			t.Fatalf("Build = %v, %v; want a duplicate-key error", m, err)
		}
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `"plan"`) {
			t.Errorf("error %q should wrap ErrInvalid and name plan", err)
		}
		if strings.Contains(err.Error(), "second-value-xyz") {
			t.Errorf("error %q echoes a value", err)
		}
	})

	t.Run("SetOptional", func(t *testing.T) {
		m, err := New().
			Set("plan", "pro").
			SetOptional("coupon", "").
			SetOptional("reason_detail", "late delivery").
			Build()
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]string{"plan": "pro", "reason_detail": "late delivery"}; !maps.Equal(m, want) {
			t.Errorf("Build = %v, want %v", m, want)
		}
		_, err = New().SetOptional("note", "sk_live_abc123").Build()
		if !errors.Is(err, ErrInvalid) || strings.Contains(err.Error(), "sk_live_abc123") {
			t.Errorf("SetOptional with a secret: err = %v", err)
		}
		_, err = New().SetOptional("userId", "x").Build()
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("SetOptional with a bad key: err = %v", err)
		}
	})

	t.Run("key limit", func(t *testing.T) {
		b := New()
		for i := range MaxKeys {
			b.Set(fmt.Sprintf("k%02d", i), "v")
		}
		if m, err := b.Build(); err != nil || len(m) != MaxKeys {
			t.Fatalf("50 keys: len %d, err %v", len(m), err)
		}
		if _, err := b.Set("k50", "v").Build(); !errors.Is(err, ErrInvalid) {
			t.Errorf("51 keys: err = %v", err)
		}
	})

	t.Run("Build returns a fresh map", func(t *testing.T) {
		b := New().Set("plan", "pro")
		m1, _ := b.Build()
		m1["plan"] = "tampered"
		m1["extra"] = "x"
		m2, err := b.Build()
		if err != nil || !maps.Equal(m2, map[string]string{"plan": "pro"}) {
			t.Errorf("second Build = %v, %v", m2, err)
		}
	})
}

func TestPerObjectMetadata(t *testing.T) {
	ws := uuid.MustParse(testWorkspace)
	const user = "auth0|5f7c8ec7c33c6c004bbafe82"

	valid := []struct {
		name  string
		build func() (map[string]string, error)
		want  map[string]string
	}{
		{"customer", func() (map[string]string, error) { return Customer(user, ws) },
			map[string]string{"user_id": user, "workspace_id": testWorkspace}},
		{"payment intent", func() (map[string]string, error) { return PaymentIntent(ws, user, "top_up") },
			map[string]string{"workspace_id": testWorkspace, "user_id": user, "purpose": "top_up"}},
		{"checkout session", func() (map[string]string, error) { return CheckoutSession(ws, user, "pro_monthly") },
			map[string]string{"workspace_id": testWorkspace, "user_id": user, "plan": "pro_monthly"}},
		{"subscription", func() (map[string]string, error) { return Subscription(ws, "pro_monthly") },
			map[string]string{"workspace_id": testWorkspace, "plan": "pro_monthly"}},
		{"refund with reason", func() (map[string]string, error) { return Refund(user, "duplicate charge") },
			map[string]string{"refunded_by": user, "reason_detail": "duplicate charge"}},
		{"refund without reason", func() (map[string]string, error) { return Refund(user, "") },
			map[string]string{"refunded_by": user}},
	}
	for _, tt := range valid {
		t.Run(tt.name, func(t *testing.T) {
			m, err := tt.build()
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(m, tt.want) {
				t.Errorf("got %v, want %v", m, tt.want)
			}
			if err := Validate(m); err != nil {
				t.Errorf("result fails ValidateMetadata: %v", err)
			}
		})
	}

	const card = "4242 4242 4242 4242"
	invalid := []struct {
		name     string
		build    func() (map[string]string, error)
		wantKeys []string
		hidden   string
	}{
		{"customer: empty user", func() (map[string]string, error) { return Customer("", ws) }, []string{"user_id"}, ""},
		{"customer: nil workspace", func() (map[string]string, error) { return Customer(user, uuid.Nil) }, []string{"workspace_id"}, ""},
		{"customer: both bad", func() (map[string]string, error) { return Customer("", uuid.Nil) }, []string{"user_id", "workspace_id"}, ""},
		{"payment intent: nil workspace", func() (map[string]string, error) { return PaymentIntent(uuid.Nil, user, "top_up") }, []string{"workspace_id"}, ""},
		{"payment intent: empty user", func() (map[string]string, error) { return PaymentIntent(ws, "", "top_up") }, []string{"user_id"}, ""},
		{"payment intent: empty purpose", func() (map[string]string, error) { return PaymentIntent(ws, user, "") }, []string{"purpose"}, ""},
		{"payment intent: card in purpose", func() (map[string]string, error) { return PaymentIntent(ws, user, "pay "+card) }, []string{"purpose"}, card},
		{"checkout: nil workspace", func() (map[string]string, error) { return CheckoutSession(uuid.Nil, user, "pro") }, []string{"workspace_id"}, ""},
		{"checkout: empty user", func() (map[string]string, error) { return CheckoutSession(ws, "", "pro") }, []string{"user_id"}, ""},
		{"checkout: empty plan", func() (map[string]string, error) { return CheckoutSession(ws, user, "") }, []string{"plan"}, ""},
		{"checkout: long plan", func() (map[string]string, error) {
			return CheckoutSession(ws, user, strings.Repeat("p", 501))
		}, []string{"plan"}, ""},
		{"subscription: nil workspace", func() (map[string]string, error) { return Subscription(uuid.Nil, "pro") }, []string{"workspace_id"}, ""},
		{"subscription: empty plan", func() (map[string]string, error) { return Subscription(ws, "") }, []string{"plan"}, ""},
		{"refund: empty refunded_by", func() (map[string]string, error) { return Refund("", "duplicate") }, []string{"refunded_by"}, ""},
		{"refund: secret in reason", func() (map[string]string, error) { return Refund(user, "key whsec_abc123XYZ leaked") }, []string{"reason_detail"}, "whsec_abc123XYZ"},
		{"refund: JWT in reason", func() (map[string]string, error) { return Refund(user, testJWT) }, []string{"reason_detail"}, testJWT[:40]},
		{"refund: invalid UTF-8 reason", func() (map[string]string, error) { return Refund(user, "bad\xc3") }, []string{"reason_detail"}, ""},
		{"refund: NUL in reason", func() (map[string]string, error) { return Refund(user, "bad\x00") }, []string{"reason_detail"}, ""},
		{"payment: NUL in user", func() (map[string]string, error) { return PaymentIntent(ws, "u\x00", "credits") }, []string{"user_id"}, ""},
	}
	for _, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			m, err := tt.build()
			if err == nil || m != nil {
				t.Fatalf("got %v, %v; want an error", m, err)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
			}
			for _, k := range tt.wantKeys {
				if !strings.Contains(err.Error(), `"`+k+`"`) {
					t.Errorf("error %q does not name %s", err, k)
				}
			}
			if tt.hidden != "" && strings.Contains(err.Error(), tt.hidden) {
				t.Errorf("error %q echoes the refused value", err)
			}
		})
	}
}

// FuzzMetadataBuilder: Build never panics, and whatever it accepts obeys
// every rule, checked against ValidateMetadata and independent oracles.
func FuzzMetadataBuilder(f *testing.F) {
	seeds := [][4]string{
		{"user_id", "auth0|123", "workspace_id", testWorkspace},
		{"plan", "pro", "reason_detail", ""},
		{"userId", "x", "plan", ""},
		{"user-id", "x", "user__id", "y"},
		{"password", "hunter2", "note", "sk_live_51HxYz"},
		{"ref", "4242 4242 4242 4242", "note", "eyJa.eyJb.c"},
		{"ref", "4242424242424241", "note", "disk_test_1"},
		{"k", "v", "k", "v"},
		{"", "", "", ""},
		// Short seeds only: a long interesting input costs the fuzzer many
		// seconds of minimization. TestValidateMetadata covers the 500/501
		// value boundary.
		{strings.Repeat("a", 40), "é😀", strings.Repeat("a", 41), "v"},
		{"note", "bad\xff", "pem", testPEM},
		{"note", "nul\x00", "plan", "\x00"},
		{"span_id", "s", "card_pan", "p"},
		{"ws", "12345678-1234-4234-8234-123456789008", "a4242424242424242", "v"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, key1, val1, key2, val2 string) {
		m, err := New().Set(key1, val1).SetOptional(key2, val2).Build()
		if err != nil {
			if m != nil {
				t.Fatalf("Build returned a map with error %v", err)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			// Messages are ASCII (keys are %+q-quoted), so a value with a
			// non-ASCII rune can only appear if it was echoed.
			for _, v := range []string{val1, val2} {
				if utf8.ValidString(v) && strings.ContainsFunc(v, func(r rune) bool { return r >= utf8.RuneSelf }) &&
					strings.Contains(err.Error(), v) {
					t.Fatalf("error %q echoes value %q", err, v)
				}
			}
		} else {
			if key1 == key2 && val2 != "" {
				t.Fatalf("duplicate key %q accepted", key1)
			}
			if err := Validate(m); err != nil {
				t.Fatalf("Build accepted %q but ValidateMetadata says %v", m, err)
			}
			if len(m) > MaxKeys || m[key1] != val1 || (val2 != "" && m[key2] != val2) {
				t.Fatalf("Build = %q for (%q, %q, %q, %q)", m, key1, val1, key2, val2)
			}
			for k, v := range m {
				if !snakeCaseKey.MatchString(k) || utf8.RuneCountInString(k) > MaxKeyLen {
					t.Fatalf("accepted key %q", k)
				}
				if v == "" || !utf8.ValidString(v) || strings.Contains(v, "\x00") || utf8.RuneCountInString(v) > MaxValueLen {
					t.Fatalf("accepted value %q for key %q", v, k)
				}
				if strings.HasPrefix(v, "sk_live_") || strings.HasPrefix(v, "whsec_") || strings.Contains(v, "-----BEGIN") {
					t.Fatalf("accepted secret-looking value for key %q", k)
				}
			}
		}
		// Build and ValidateMetadata agree on distinct keys.
		if key1 != key2 && val2 != "" {
			verr := Validate(map[string]string{key1: val1, key2: val2})
			if (err == nil) != (verr == nil) {
				t.Fatalf("Build err %v, ValidateMetadata err %v", err, verr)
			}
		}
	})
}

func BenchmarkCustomerMetadata(b *testing.B) {
	ws := uuid.MustParse(testWorkspace)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Customer("auth0|5f7c8ec7c33c6c004bbafe82", ws); err != nil {
			b.Fatal(err)
		}
	}
}

func TestNumericUserIDIsNotACardNumber(t *testing.T) {
	// 4242424242424242 passes the Luhn check; as a user id (some identity
	// providers issue numeric ids) it is an identifier, not a card.
	const numericID = "4242424242424242"
	if _, err := Customer(numericID, uuid.New()); err != nil {
		t.Fatalf("numeric user id refused: %v", err)
	}
	if _, err := Refund(numericID, ""); err != nil {
		t.Fatalf("numeric refunded_by refused: %v", err)
	}
	// The same digits in free text are still refused.
	if _, err := Refund("admin", "card "+numericID); err == nil {
		t.Fatal("a card number in reason_detail was accepted")
	}
	if _, err := New().Set("note", numericID).Build(); err == nil {
		t.Fatal("a card number under a non-identifier key was accepted")
	}
}
