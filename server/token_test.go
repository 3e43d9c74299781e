package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"billingapi/auth"
)

// jwtLike matches anything shaped like a JWT (three base64url parts, the
// first a JSON object's encoding).
var jwtLike = regexp.MustCompile(`eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+`)

// welcome returns the start banner of a development server configured by
// env.
func welcome(t *testing.T, env map[string]string) (string, Config) {
	t.Helper()
	cfg, err := LoadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if cfg.Production() {
		t.Fatal("the banner's tokens are a development matter")
	}
	var out bytes.Buffer
	printWelcome(&out, &Main{Config: cfg})
	return out.String(), cfg
}

// The start banner prints ready-made tokens only while the public
// development secret is in use; with a configured secret or a public key
// it prints how to get one, and no token.
func TestWelcomeBannerTokens(t *testing.T) {
	t.Run("DevelopmentSecretPrintsTokensThatVerify", func(t *testing.T) {
		banner, cfg := welcome(t, map[string]string{})
		if cfg.JWT.HS256Secret != DevJWTSecret {
			t.Fatalf("the default development configuration does not use DevJWTSecret")
		}
		tokens := jwtLike.FindAllString(banner, -1)
		if len(tokens) != 2 {
			t.Fatalf("banner carries %d tokens, want a user's and an admin's:\n%s", len(tokens), banner)
		}
		verifier, err := auth.NewVerifier(auth.VerifierConfig{HS256Secret: []byte(DevJWTSecret)})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, tok := range tokens {
			v, err := verifier.Verify(tok)
			if err != nil {
				t.Fatalf("a printed token does not verify with the development secret: %v", err)
			}
			got[v.UserID] = v.Admin
		}
		if admin, ok := got["dev-user"]; !ok || admin {
			t.Errorf("want a non-admin dev-user token, got %v", got)
		}
		if admin, ok := got["dev-admin"]; !ok || !admin {
			t.Errorf("want a platform-admin dev-admin token, got %v", got)
		}
	})

	t.Run("ConfiguredSecretPrintsHowToMintAndNoToken", func(t *testing.T) {
		const secret = "a-configured-staging-secret-of-more-than-32-bytes"
		env := map[string]string{"JWT_HS256_SECRET": secret}
		banner, _ := welcome(t, env)
		if tok := jwtLike.FindString(banner); tok != "" || strings.Contains(banner, "eyJ") || strings.Contains(banner, "Bearer") {
			t.Fatalf("the banner carries a token although a configured secret is in use:\n%s", banner)
		}
		if strings.Contains(banner, secret) {
			t.Fatalf("the banner carries the secret:\n%s", banner)
		}
		for _, want := range []string{"bin/server token --sub USER", "--admin", "JWT_HS256_SECRET is configured"} {
			if !strings.Contains(banner, want) {
				t.Errorf("the banner does not say %q:\n%s", want, banner)
			}
		}
		// What it says to run mints a token the server accepts.
		var out, errOut bytes.Buffer
		if err := mintToken([]string{"--sub", "alice", "--email", "alice@example.com", "--admin"},
			func(k string) string { return env[k] }, &out, &errOut); err != nil {
			t.Fatalf("token --sub alice --admin: %v (%s)", err, errOut.String())
		}
		verifier, err := auth.NewVerifier(auth.VerifierConfig{HS256Secret: []byte(secret)})
		if err != nil {
			t.Fatal(err)
		}
		if v, err := verifier.Verify(strings.TrimSpace(out.String())); err != nil || v.UserID != "alice" || !v.Admin {
			t.Fatalf("the minted token: viewer %+v, err %v; want alice, a platform admin", v, err)
		}
	})

	t.Run("PublicKeyPrintsNoToken", func(t *testing.T) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), "jwt.pem")
		if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		banner, _ := welcome(t, map[string]string{"JWT_PUBLIC_KEY_FILE": file})
		if strings.Contains(banner, "eyJ") || strings.Contains(banner, "Bearer") {
			t.Fatalf("the banner carries a token although tokens are verified with a public key:\n%s", banner)
		}
		if !strings.Contains(banner, "JWT_PUBLIC_KEY_FILE") || !strings.Contains(banner, "private key") {
			t.Errorf("the banner does not say where tokens come from:\n%s", banner)
		}
	})
}
