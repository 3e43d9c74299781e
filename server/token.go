package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"billingapi/auth"
)

// DevTokenTTL is how long a development token lives.
const DevTokenTTL = 24 * time.Hour

// mintToken is the `token` subcommand: it prints a development JWT signed
// with the configured HS256 secret. It refuses in production, where tokens
// come from the real identity provider.
func mintToken(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("token", stderr)
	sub := fs.String("sub", "", "user id (JWT sub), required")
	email := fs.String("email", "", "email claim")
	name := fs.String("name", "", "name claim")
	admin := fs.Bool("admin", false, `mark the user a platform admin (role: "admin")`)
	ttl := fs.Duration("ttl", DevTokenTTL, "lifetime")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *sub == "" {
		return errors.New("token: --sub is required")
	}
	cfg, err := LoadConfig(getenv)
	if err != nil {
		return err
	}
	tok, err := devToken(cfg, auth.Claims{Subject: *sub, Email: *email, Name: *name, Admin: *admin}, *ttl)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}

// devToken mints a token for development; it refuses in production and
// when the server verifies tokens with a public key it cannot sign for.
func devToken(cfg Config, c auth.Claims, ttl time.Duration) (string, error) {
	if cfg.Production() {
		return "", errors.New("token: minting development tokens is disabled when APP_ENV=production")
	}
	if cfg.JWT.HS256Secret == "" {
		return "", errors.New("token: the server verifies tokens with JWT_PUBLIC_KEY_FILE; mint them with the matching private key")
	}
	return auth.NewHS256Signer([]byte(cfg.JWT.HS256Secret), cfg.JWT.Issuer, cfg.JWT.Audience).Mint(c, ttl)
}

// printWelcome prints where the API listens and, in development, how to
// get a token. It prints ready-made tokens (a user and a platform admin,
// 24 hours) only while the public development secret is in use, which
// anyone can sign with anyway. With a configured secret it prints how to
// mint one instead, and no token: the banner lands in terminals, CI and
// container logs, and a platform-admin token signed with a real secret
// (a staging server run with APP_ENV=development, the docker-compose
// replicas) is a credential for whatever trusts that secret.
func printWelcome(w io.Writer, m *Main) {
	url := m.URL()
	fmt.Fprintf(w, "\nBilling API listening on %s\n", url)
	fmt.Fprintf(w, "  playground  %s/\n  graphql     %s/graphql\n", url, url)
	if m.Config.Production() {
		return
	}
	if m.Config.JWT.HS256Secret != DevJWTSecret {
		printMintHelp(w, m.Config)
		return
	}
	user, err1 := devToken(m.Config, auth.Claims{Subject: "dev-user", Email: "dev@example.com", Name: "Dev User"}, DevTokenTTL)
	admin, err2 := devToken(m.Config, auth.Claims{Subject: "dev-admin", Email: "admin@example.com", Name: "Dev Admin", Admin: true}, DevTokenTTL)
	if err1 != nil || err2 != nil {
		return
	}
	fmt.Fprintf(w, "\nDevelopment tokens (24h, signed with the public development secret; mint more with `%s`):\n", mintCommand)
	fmt.Fprintf(w, "  user  dev-user   Bearer %s\n", user)
	fmt.Fprintf(w, "  admin dev-admin  Bearer %s\n\n", admin)
}

// mintCommand is how the banner tells a developer to mint a token: the
// `token` subcommand of the binary `make run` builds (`go run ./server
// token` from the source, the image's /billing-server token).
const mintCommand = "bin/server token --sub USER --email EMAIL"

// printMintHelp prints, in place of ready-made tokens, how to get one
// under cfg's JWT configuration (a configured HS256 secret or a public
// key).
func printMintHelp(w io.Writer, cfg Config) {
	if cfg.JWT.HS256Secret == "" {
		fmt.Fprintf(w, "\nNo development tokens: tokens are verified with JWT_PUBLIC_KEY_FILE, so they come from "+
			"whoever holds its private key (your identity provider).\n\n")
		return
	}
	fmt.Fprintf(w, "\nNo development tokens printed: JWT_HS256_SECRET is configured (not the public development secret).\n")
	fmt.Fprintf(w, "Mint one with the same JWT_* environment as this server:\n")
	fmt.Fprintf(w, "  %s           # a user\n", mintCommand)
	fmt.Fprintf(w, "  %s --admin   # a platform admin; --ttl 1h sets the lifetime (default 24h)\n\n", mintCommand)
}
