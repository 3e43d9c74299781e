package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	testIssuer   = "https://issuer.test"
	testAudience = "billingapi"
)

var (
	testSecret  = []byte("0123456789abcdef0123456789abcdef") // 32 bytes
	otherSecret = []byte("fedcba9876543210fedcba9876543210")
)

// testKeys holds keys generated once per test binary; RSA generation is slow under -race.
type testKeys struct {
	rsa       *rsa.PrivateKey
	rsaPEM    []byte
	ec        *ecdsa.PrivateKey
	ecPEM     []byte
	otherEC   *ecdsa.PrivateKey
	ecP384PEM []byte
	rsa1024   []byte
	ed25519   []byte
}

var loadKeys = sync.OnceValues(func() (*testKeys, error) {
	k := &testKeys{}
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, err
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	if k.otherEC, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, err
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		return nil, err
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	for _, p := range []struct {
		dst *[]byte
		pub any
	}{
		{&k.rsaPEM, &k.rsa.PublicKey},
		{&k.ecPEM, &k.ec.PublicKey},
		{&k.ecP384PEM, &p384.PublicKey},
		{&k.rsa1024, &small.PublicKey},
		{&k.ed25519, edPub},
	} {
		der, err := x509.MarshalPKIXPublicKey(p.pub)
		if err != nil {
			return nil, err
		}
		*p.dst = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	return k, nil
})

func keys(tb testing.TB) *testKeys {
	tb.Helper()
	k, err := loadKeys()
	if err != nil {
		tb.Fatalf("generate test keys: %v", err)
	}
	return k
}

func newVerifier(tb testing.TB, cfg VerifierConfig) *Verifier {
	tb.Helper()
	v, err := NewVerifier(cfg)
	if err != nil {
		tb.Fatalf("NewVerifier: %v", err)
	}
	return v
}

// claims returns a valid payload for the test issuer and audience; mutate it per case.
func claims(now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"iss":   testIssuer,
		"aud":   testAudience,
		"sub":   "user-123",
		"email": "alice@example.com",
		"name":  "Alice",
		"iat":   now.Unix(),
		"nbf":   now.Unix(),
		"exp":   now.Add(time.Hour).Unix(),
	}
}

func sign(tb testing.TB, m jwt.SigningMethod, key any, c jwt.Claims) string {
	tb.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		tb.Fatalf("sign %s: %v", m.Alg(), err)
	}
	return s
}

// rawHS signs payload, a JSON text taken as it is (bytes JSON encoders
// would never write included), with the HS256 test secret.
func rawHS(tb testing.TB, payload string) string {
	tb.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	signing := enc([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc([]byte(payload))
	sig, err := jwt.SigningMethodHS256.Sign(signing, testSecret)
	if err != nil {
		tb.Fatal(err)
	}
	return signing + "." + enc(sig)
}

// tamper rewrites the payload segment with edit and keeps the original header and signature.
func tamper(tb testing.TB, token string, edit func(jwt.MapClaims)) string {
	tb.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		tb.Fatalf("token has %d segments", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		tb.Fatalf("decode payload: %v", err)
	}
	var m jwt.MapClaims
	if err := json.Unmarshal(raw, &m); err != nil {
		tb.Fatalf("unmarshal payload: %v", err)
	}
	edit(m)
	raw, err = json.Marshal(m)
	if err != nil {
		tb.Fatalf("marshal payload: %v", err)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString(raw)
	return strings.Join(parts, ".")
}

// assertRefused checks err matches want and does not echo input (the token or header).
func assertRefused(tb testing.TB, err error, want error, input string) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("accepted; want %v", want)
	}
	if !errors.Is(err, want) {
		tb.Fatalf("err = %v; want errors.Is %v", err, want)
	}
	if input != "" && strings.Contains(err.Error(), input) {
		tb.Fatalf("error %q contains the input", err.Error())
	}
}

func TestNewVerifier(t *testing.T) {
	k := keys(t)
	privDER, err := x509.MarshalPKCS8PrivateKey(k.ec)
	if err != nil {
		t.Fatal(err)
	}
	privPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})
	tests := []struct {
		name    string
		cfg     VerifierConfig
		wantErr bool
	}{
		{"HS256 secret of 32 bytes is accepted", VerifierConfig{HS256Secret: testSecret}, false},
		{"RSA 2048 public key is accepted", VerifierConfig{PublicKeyPEM: k.rsaPEM}, false},
		{"ECDSA P-256 public key is accepted", VerifierConfig{PublicKeyPEM: k.ecPEM}, false},
		{"no key is refused", VerifierConfig{}, true},
		{"both keys are refused", VerifierConfig{HS256Secret: testSecret, PublicKeyPEM: k.rsaPEM}, true},
		{"short secret is refused", VerifierConfig{HS256Secret: testSecret[:31]}, true},
		{"bad PEM is refused", VerifierConfig{PublicKeyPEM: []byte("not a pem block")}, true},
		{"PEM with corrupt DER is refused", VerifierConfig{PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("junk")})}, true},
		{"private key PEM is refused", VerifierConfig{PublicKeyPEM: privPEM}, true},
		{"trailing PEM block is refused", VerifierConfig{PublicKeyPEM: append(append([]byte{}, k.ecPEM...), k.rsaPEM...)}, true},
		{"Ed25519 key type is refused", VerifierConfig{PublicKeyPEM: k.ed25519}, true},
		{"ECDSA P-384 key is refused", VerifierConfig{PublicKeyPEM: k.ecP384PEM}, true},
		{"RSA 1024 key is refused", VerifierConfig{PublicKeyPEM: k.rsa1024}, true},
		{"negative leeway is refused", VerifierConfig{HS256Secret: testSecret, Leeway: -time.Second}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewVerifier(tt.cfg)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("NewVerifier succeeded; want error")
				}
				if v != nil {
					t.Fatalf("NewVerifier returned a verifier with an error")
				}
				if len(tt.cfg.HS256Secret) > 0 && strings.Contains(err.Error(), string(tt.cfg.HS256Secret)) {
					t.Fatalf("error %q contains the secret", err)
				}
				if len(tt.cfg.PublicKeyPEM) > 0 && strings.Contains(err.Error(), string(tt.cfg.PublicKeyPEM)) {
					t.Fatalf("error %q contains the PEM", err)
				}
				return
			}
			if err != nil || v == nil {
				t.Fatalf("NewVerifier: %v", err)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	k := keys(t)
	cfg := func(c VerifierConfig) VerifierConfig {
		c.Issuer, c.Audience = testIssuer, testAudience
		return c
	}
	hs := newVerifier(t, cfg(VerifierConfig{HS256Secret: testSecret}))
	rs := newVerifier(t, cfg(VerifierConfig{PublicKeyPEM: k.rsaPEM}))
	es := newVerifier(t, cfg(VerifierConfig{PublicKeyPEM: k.ecPEM}))
	noChecks := newVerifier(t, VerifierConfig{HS256Secret: testSecret})

	now := time.Now()
	with := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := claims(now)
		edit(c)
		return c
	}
	hsToken := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, testSecret, c) }
	validHS := hsToken(claims(now))

	tests := []struct {
		name  string
		v     *Verifier
		token string
		want  *Viewer // nil means refused
		why   string  // reason suffix of the refusal error
	}{
		{"valid HS256 is accepted", hs, validHS, &Viewer{UserID: "user-123", Email: "alice@example.com", Name: "Alice"}, ""},
		{"valid RS256 is accepted", rs, sign(t, jwt.SigningMethodRS256, k.rsa, claims(now)), &Viewer{UserID: "user-123", Email: "alice@example.com", Name: "Alice"}, ""},
		{"valid ES256 is accepted", es, sign(t, jwt.SigningMethodES256, k.ec, claims(now)), &Viewer{UserID: "user-123", Email: "alice@example.com", Name: "Alice"}, ""},
		{"unset issuer and audience are not checked", noChecks, hsToken(with(func(c jwt.MapClaims) { delete(c, "iss"); delete(c, "aud") })), &Viewer{UserID: "user-123", Email: "alice@example.com", Name: "Alice"}, ""},
		{"audience in a list is accepted", hs, hsToken(with(func(c jwt.MapClaims) { c["aud"] = []string{"other", testAudience} })), &Viewer{UserID: "user-123", Email: "alice@example.com", Name: "Alice"}, ""},
		{"expired is refused", hs, hsToken(with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() })), nil, "expired"},
		{"not yet valid nbf +1h is refused", hs, hsToken(with(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() })), nil, "not yet valid"},
		{"issued in the future is refused", hs, hsToken(with(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Hour).Unix() })), nil, "issued in the future"},
		{"expired within leeway is accepted", hs, hsToken(with(func(c jwt.MapClaims) { c["exp"] = now.Add(-10 * time.Second).Unix() })), &Viewer{UserID: "user-123", Email: "alice@example.com", Name: "Alice"}, ""},
		{"expired beyond leeway is refused", hs, hsToken(with(func(c jwt.MapClaims) { c["exp"] = now.Add(-60 * time.Second).Unix() })), nil, "expired"},
		{"nbf within leeway is accepted", hs, hsToken(with(func(c jwt.MapClaims) { c["nbf"] = now.Add(10 * time.Second).Unix() })), &Viewer{UserID: "user-123", Email: "alice@example.com", Name: "Alice"}, ""},
		{"nbf beyond leeway is refused", hs, hsToken(with(func(c jwt.MapClaims) { c["nbf"] = now.Add(60 * time.Second).Unix() })), nil, "not yet valid"},
		{"alg none is refused", hs, sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(now)), nil, "bad signature"},
		{"alg none is refused by RS256 verifier", rs, sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(now)), nil, "bad signature"},
		{"HS256 keyed with RSA public PEM is refused (key confusion)", rs, sign(t, jwt.SigningMethodHS256, k.rsaPEM, claims(now)), nil, "bad signature"},
		{"HS256 keyed with EC public PEM is refused (key confusion)", es, sign(t, jwt.SigningMethodHS256, k.ecPEM, claims(now)), nil, "bad signature"},
		{"RS256 token against HS256 verifier is refused", hs, sign(t, jwt.SigningMethodRS256, k.rsa, claims(now)), nil, "bad signature"},
		{"ES256 token against RS256 verifier is refused", rs, sign(t, jwt.SigningMethodES256, k.ec, claims(now)), nil, "bad signature"},
		{"HS512 with the right secret is refused", hs, sign(t, jwt.SigningMethodHS512, testSecret, claims(now)), nil, "bad signature"},
		{"PS256 with the right RSA key is refused", rs, sign(t, jwt.SigningMethodPS256, k.rsa, claims(now)), nil, "bad signature"},
		{"ES256 signed by another key is refused", es, sign(t, jwt.SigningMethodES256, k.otherEC, claims(now)), nil, "bad signature"},
		{"wrong issuer is refused", hs, hsToken(with(func(c jwt.MapClaims) { c["iss"] = "https://evil.test" })), nil, "wrong issuer"},
		{"missing issuer is refused", hs, hsToken(with(func(c jwt.MapClaims) { delete(c, "iss") })), nil, "missing claim"},
		{"wrong audience is refused", hs, hsToken(with(func(c jwt.MapClaims) { c["aud"] = "other-api" })), nil, "wrong audience"},
		{"missing audience is refused", hs, hsToken(with(func(c jwt.MapClaims) { delete(c, "aud") })), nil, "missing claim"},
		{"missing exp is refused", hs, hsToken(with(func(c jwt.MapClaims) { delete(c, "exp") })), nil, "missing claim"},
		{"missing sub is refused", hs, hsToken(with(func(c jwt.MapClaims) { delete(c, "sub") })), nil, "missing sub"},
		{"empty sub is refused", hs, hsToken(with(func(c jwt.MapClaims) { c["sub"] = "" })), nil, "missing sub"},
		{"sub over 255 bytes is refused", hs, hsToken(with(func(c jwt.MapClaims) { c["sub"] = strings.Repeat("u", 256) })), nil, "bad sub"},
		{"sub of 128 two-byte chars is refused", hs, hsToken(with(func(c jwt.MapClaims) { c["sub"] = strings.Repeat("é", 128) })), nil, "bad sub"},
		{"sub of 255 bytes in multibyte chars is accepted", hs, hsToken(with(func(c jwt.MapClaims) {
			c["sub"] = strings.Repeat("é", 127) + "u"
			delete(c, "email")
			delete(c, "name")
		})), &Viewer{UserID: strings.Repeat("é", 127) + "u"}, ""},
		{"sub with NUL is refused", hs, hsToken(with(func(c jwt.MapClaims) { c["sub"] = "user-123\x00" })), nil, "bad sub"},
		{"sub of NUL alone is refused", hs, hsToken(with(func(c jwt.MapClaims) { c["sub"] = "\x00" })), nil, "bad sub"},
		{"sub of spaces is refused", hs, hsToken(with(func(c jwt.MapClaims) { c["sub"] = " \t " })), nil, "bad sub"},
		{"sub with spaces around is kept as it is", hs, hsToken(with(func(c jwt.MapClaims) { c["sub"] = " user-123 " })), &Viewer{UserID: " user-123 ", Email: "alice@example.com", Name: "Alice"}, ""},
		{"invalid UTF-8 in the payload's sub is read as U+FFFD", hs, rawHS(t, fmt.Sprintf(`{"iss":%q,"aud":%q,"sub":"%s","iat":%d,"exp":%d}`, testIssuer, testAudience, "u\xff", now.Unix(), now.Add(time.Hour).Unix())), &Viewer{UserID: "u\uFFFD"}, ""},
		{"invalid UTF-8 in the payload's name is read as U+FFFD", hs, rawHS(t, fmt.Sprintf(`{"iss":%q,"aud":%q,"sub":"u","name":"%s","iat":%d,"exp":%d}`, testIssuer, testAudience, "\xed\xa0\x80", now.Unix(), now.Add(time.Hour).Unix())), &Viewer{UserID: "u", Name: "\uFFFD\uFFFD\uFFFD"}, ""},
		{"name with NUL is left out", hs, hsToken(with(func(c jwt.MapClaims) { c["name"] = "Alice\x00" })), &Viewer{UserID: "user-123", Email: "alice@example.com"}, ""},
		{"email with NUL is left out", hs, hsToken(with(func(c jwt.MapClaims) { c["email"] = "victim@example.com\x00" })), &Viewer{UserID: "user-123", Name: "Alice"}, ""},
		{"name with other control characters is kept", hs, hsToken(with(func(c jwt.MapClaims) { c["name"] = "Al\x01ice" })), &Viewer{UserID: "user-123", Email: "alice@example.com", Name: "Al\x01ice"}, ""},
		{"non-string sub is refused", hs, hsToken(with(func(c jwt.MapClaims) { c["sub"] = 42 })), nil, "malformed"},
		{"tampered payload is refused", hs, tamper(t, validHS, func(c jwt.MapClaims) { c["sub"] = "user-999" }), nil, "bad signature"},
		{"tampered role is refused", es, tamper(t, sign(t, jwt.SigningMethodES256, k.ec, claims(now)), func(c jwt.MapClaims) { c["role"] = "admin" }), nil, "bad signature"},
		{"wrong secret is refused", hs, sign(t, jwt.SigningMethodHS256, otherSecret, claims(now)), nil, "bad signature"},
		{"signature stripped is refused", hs, validHS[:strings.LastIndex(validHS, ".")+1], nil, "bad signature"},
		{"empty string is refused", hs, "", nil, "empty"},
		{"abc is refused", hs, "abc", nil, "malformed"},
		{"a.b.c is refused", hs, "a.b.c", nil, "malformed"},
		{"four segments are refused", hs, validHS + ".x", nil, "malformed"},
		{"very long garbage is refused", hs, strings.Repeat("A", 1<<20), nil, "too long"},
		{"properly signed token over 8 KiB is refused", hs, hsToken(with(func(c jwt.MapClaims) { c["name"] = strings.Repeat("n", 8<<10) })), nil, "too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.v.Verify(tt.token)
			if tt.want == nil {
				assertRefused(t, err, ErrUnauthenticated, tt.token)
				if want := ErrUnauthenticated.Error() + ": " + tt.why; err.Error() != want {
					t.Fatalf("err = %q; want %q", err, want)
				}
				if errors.Is(err, ErrBadSubject) != (tt.why == ErrBadSubject.Error()) {
					t.Fatalf("errors.Is(%q, ErrBadSubject) = %t", err, !(tt.why == ErrBadSubject.Error()))
				}
				if got != (Viewer{}) {
					t.Fatalf("refused token returned viewer %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if want := expiryOf(t, tt.token).Add(tt.v.leeway); !got.Expires.Equal(want) {
				t.Fatalf("Expires = %v; want exp plus the leeway, %v", got.Expires, want)
			}
			got.Expires = time.Time{}
			if got != *tt.want {
				t.Fatalf("Verify = %+v; want %+v", got, *tt.want)
			}
		})
	}
}

// expiryOf returns a token's exp claim.
func expiryOf(t *testing.T, token string) time.Time {
	t.Helper()
	var rc jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &rc); err != nil || rc.ExpiresAt == nil {
		t.Fatalf("token without exp: %v", err)
	}
	return rc.ExpiresAt.Time
}

func TestVerifyRole(t *testing.T) {
	v := newVerifier(t, VerifierConfig{HS256Secret: testSecret, Issuer: testIssuer, Audience: testAudience})
	now := time.Now()
	tests := []struct {
		name      string
		role      any // nil means no role claim
		wantAdmin bool
	}{
		{"role admin makes an admin", "admin", true},
		{"no role is not admin", nil, false},
		{"role user is not admin", "user", false},
		{"role ADMIN is not admin", "ADMIN", false},
		{"role admin with space is not admin", "admin ", false},
		{"role list is not admin", []string{"admin"}, false},
		{"role true is not admin", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := claims(now)
			if tt.role != nil {
				c["role"] = tt.role
			}
			got, err := v.Verify(sign(t, jwt.SigningMethodHS256, testSecret, c))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got.Admin != tt.wantAdmin {
				t.Fatalf("Admin = %v; want %v", got.Admin, tt.wantAdmin)
			}
		})
	}
}

func TestViewerFromHeader(t *testing.T) {
	v := newVerifier(t, VerifierConfig{HS256Secret: testSecret, Issuer: testIssuer, Audience: testAudience})
	tok := sign(t, jwt.SigningMethodHS256, testSecret, claims(time.Now()))
	tests := []struct {
		name    string
		header  string
		wantErr error // nil means accepted
	}{
		{"Bearer with valid token is accepted", "Bearer " + tok, nil},
		{"lowercase bearer with valid token is accepted", "bearer " + tok, nil},
		{"uppercase BEARER with extra spaces is accepted", "  BEARER   " + tok + " ", nil},
		{"Bearer x is refused", "Bearer x", ErrUnauthenticated},
		{"bearer x is refused", "bearer x", ErrUnauthenticated},
		{"Basic x is refused", "Basic x", ErrUnauthenticated},
		{"Basic with valid token is refused", "Basic " + tok, ErrUnauthenticated},
		{"bare token without scheme is refused", tok, ErrUnauthenticated},
		{"Bearer without token is refused", "Bearer", ErrUnauthenticated},
		{"Bearer with only spaces is refused", "Bearer   ", ErrUnauthenticated},
		{"Bearer with two tokens is refused", "Bearer " + tok + " " + tok, ErrUnauthenticated},
		{"empty header is no token", "", ErrNoToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := v.ViewerFromHeader(tt.header)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("ViewerFromHeader: %v", err)
				}
				if got.UserID != "user-123" {
					t.Fatalf("UserID = %q; want user-123", got.UserID)
				}
				return
			}
			assertRefused(t, err, tt.wantErr, tt.header)
			if tt.wantErr == ErrNoToken && errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("empty header err %v also matches ErrUnauthenticated", err)
			}
			if strings.Contains(err.Error(), tok) {
				t.Fatalf("error %q contains the token", err)
			}
		})
	}
}

func TestMint(t *testing.T) {
	v := newVerifier(t, VerifierConfig{HS256Secret: testSecret, Issuer: testIssuer, Audience: testAudience})

	t.Run("minted token round-trips through Verify", func(t *testing.T) {
		s := NewHS256Signer(testSecret, testIssuer, testAudience)
		for _, c := range []Claims{
			{Subject: "user-1", Email: "a@example.com", Name: "A"},
			{Subject: "admin-1", Email: "root@example.com", Name: "Root", Admin: true},
		} {
			tok, err := s.Mint(c, time.Minute)
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			got, err := v.Verify(tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if want := expiryOf(t, tok).Add(defaultLeeway); !got.Expires.Equal(want) {
				t.Fatalf("Expires = %v; want %v", got.Expires, want)
			}
			got.Expires = time.Time{}
			want := Viewer{UserID: c.Subject, Email: c.Email, Name: c.Name, Admin: c.Admin}
			if got != want {
				t.Fatalf("Verify = %+v; want %+v", got, want)
			}
		}
	})

	t.Run("minted token carries iss aud iat nbf exp jti", func(t *testing.T) {
		tok, err := NewHS256Signer(testSecret, testIssuer, testAudience).Mint(Claims{Subject: "u"}, time.Minute)
		if err != nil {
			t.Fatalf("Mint: %v", err)
		}
		var rc jwt.RegisteredClaims
		if _, _, err := jwt.NewParser().ParseUnverified(tok, &rc); err != nil {
			t.Fatalf("ParseUnverified: %v", err)
		}
		if rc.Issuer != testIssuer || len(rc.Audience) != 1 || rc.Audience[0] != testAudience ||
			rc.IssuedAt == nil || rc.NotBefore == nil || rc.ExpiresAt == nil || rc.ID == "" {
			t.Fatalf("registered claims incomplete: %+v", rc)
		}
		if d := rc.ExpiresAt.Sub(rc.IssuedAt.Time); d != time.Minute {
			t.Fatalf("exp - iat = %v; want 1m", d)
		}
	})

	t.Run("minted token expires after ttl plus leeway", func(t *testing.T) {
		tok, err := NewHS256Signer(testSecret, testIssuer, testAudience).Mint(Claims{Subject: "u"}, time.Second)
		if err != nil {
			t.Fatalf("Mint: %v", err)
		}
		strict := newVerifier(t, VerifierConfig{HS256Secret: testSecret, Leeway: time.Nanosecond})
		time.Sleep(2100 * time.Millisecond)
		_, err = strict.Verify(tok)
		assertRefused(t, err, ErrUnauthenticated, tok)
	})

	t.Run("token from another signer secret is refused", func(t *testing.T) {
		tok, err := NewHS256Signer(otherSecret, testIssuer, testAudience).Mint(Claims{Subject: "u"}, time.Minute)
		if err != nil {
			t.Fatalf("Mint: %v", err)
		}
		_, err = v.Verify(tok)
		assertRefused(t, err, ErrUnauthenticated, tok)
	})

	errCases := []struct {
		name   string
		secret []byte
		c      Claims
		ttl    time.Duration
	}{
		{"short secret is refused", testSecret[:31], Claims{Subject: "u"}, time.Minute},
		{"empty subject is refused", testSecret, Claims{}, time.Minute},
		{"subject over 255 bytes is refused", testSecret, Claims{Subject: strings.Repeat("é", 128)}, time.Minute},
		{"subject with NUL is refused", testSecret, Claims{Subject: "u\x00"}, time.Minute},
		{"subject of spaces is refused", testSecret, Claims{Subject: "  "}, time.Minute},
		{"zero ttl is refused", testSecret, Claims{Subject: "u"}, 0},
		{"negative ttl is refused", testSecret, Claims{Subject: "u"}, -time.Minute},
	}
	for _, tt := range errCases {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := NewHS256Signer(tt.secret, testIssuer, testAudience).Mint(tt.c, tt.ttl)
			if err == nil || tok != "" {
				t.Fatalf("Mint = %q, %v; want error", tok, err)
			}
			if strings.Contains(err.Error(), string(tt.secret)) {
				t.Fatalf("error %q contains the secret", err)
			}
		})
	}
}

// validHMAC reports whether token is three segments whose strict base64url
// signature is the HS256 MAC of the first two under secret, and whose header
// says alg HS256: the only shape of token a verifier may accept.
func validHMAC(token string, secret []byte) bool {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return false
	}
	sig, err := base64.RawURLEncoding.Strict().DecodeString(parts[2])
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return false
	}
	hdr, err := base64.RawURLEncoding.Strict().DecodeString(parts[0])
	if err != nil {
		return false
	}
	var h struct {
		Alg string `json:"alg"`
	}
	return json.Unmarshal(hdr, &h) == nil && h.Alg == "HS256"
}

func FuzzVerify(f *testing.F) {
	v := newVerifier(f, VerifierConfig{HS256Secret: testSecret, Issuer: testIssuer, Audience: testAudience})
	k := keys(f)
	now := time.Now()
	valid := sign(f, jwt.SigningMethodHS256, testSecret, claims(now))
	seeds := []string{
		valid,
		tamper(f, valid, func(c jwt.MapClaims) { c["role"] = "admin" }),
		sign(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(now)),
		sign(f, jwt.SigningMethodHS256, k.rsaPEM, claims(now)),
		sign(f, jwt.SigningMethodHS256, otherSecret, claims(now)),
		sign(f, jwt.SigningMethodES256, k.ec, claims(now)),
		"", "abc", "a.b.c", "..", "e30.e30.", "eyJhbGciOiJIUzI1NiJ9.e30.AAAA",
		strings.Repeat(".", 100), "\x00\xff", strings.Repeat("A", 9000),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		got, err := v.Verify(token)
		if err != nil {
			if !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("err %v does not match ErrUnauthenticated", err)
			}
			if !strings.HasPrefix(err.Error(), ErrUnauthenticated.Error()) || len(err.Error()) > len(ErrUnauthenticated.Error())+32 {
				t.Fatalf("err %q is not a short fixed message", err)
			}
			if len(token) > 8 && strings.Contains(err.Error(), token) {
				t.Fatalf("err %q contains the token", err)
			}
			if got != (Viewer{}) {
				t.Fatalf("refused token returned viewer %+v", got)
			}
			return
		}
		if !validHMAC(token, testSecret) {
			t.Fatalf("accepted a token not HS256-signed with the secret: %q", token)
		}
		if len(token) > 8<<10 || got.UserID == "" {
			t.Fatalf("accepted token breaks limits: len=%d viewer=%+v", len(token), got)
		}
	})
}

func BenchmarkVerifyHS256(b *testing.B) {
	v := newVerifier(b, VerifierConfig{HS256Secret: testSecret, Issuer: testIssuer, Audience: testAudience})
	tok := sign(b, jwt.SigningMethodHS256, testSecret, claims(time.Now()))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyES256(b *testing.B) {
	k := keys(b)
	v := newVerifier(b, VerifierConfig{PublicKeyPEM: k.ecPEM, Issuer: testIssuer, Audience: testAudience})
	tok := sign(b, jwt.SigningMethodES256, k.ec, claims(time.Now()))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}
