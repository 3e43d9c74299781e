package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"billingapi/internal/pgtext"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// ErrUnauthenticated is returned (possibly wrapped) for every token that is refused.
var ErrUnauthenticated = errors.New("auth: invalid or expired token")

// ErrNoToken is returned by ViewerFromHeader when the Authorization header is empty.
var ErrNoToken = errors.New("auth: no token")

// ErrBadSubject is wrapped, beside ErrUnauthenticated, by the refusal of a
// properly signed token whose `sub` cannot be a user id (see
// checkSubject): signing in again will not help, so the server can say so.
var ErrBadSubject = errors.New("bad sub")

const (
	// maxTokenLen is the longest token Verify will parse; longer ones are refused unread.
	maxTokenLen = 8 << 10
	// maxSubjectLen is the longest `sub` claim, in bytes, that Verify
	// accepts: the users table's id holds at most 255 bytes (ent's MaxLen
	// counts bytes), and a longer sub would be refused there, as INTERNAL.
	maxSubjectLen = 255
	// minHS256SecretLen is the shortest HS256 secret NewVerifier and Mint accept.
	minHS256SecretLen = 32
	// minRSABits is the smallest RSA modulus NewVerifier accepts.
	minRSABits = 2048
	// defaultLeeway is the clock skew allowed when VerifierConfig.Leeway is zero.
	defaultLeeway = 30 * time.Second
	// roleAdmin is the `role` claim value that makes a viewer a platform admin.
	roleAdmin = "admin"
)

// VerifierConfig configures token verification; exactly one of HS256Secret and PublicKeyPEM must be set.
type VerifierConfig struct {
	HS256Secret  []byte        // set for HS256; at least 32 bytes
	PublicKeyPEM []byte        // set for RS256 or ES256 (PEM "PUBLIC KEY", RSA >= 2048 bits or ECDSA P-256)
	Issuer       string        // checked when non-empty
	Audience     string        // checked when non-empty
	Leeway       time.Duration // clock skew allowed (30s if zero; negative is refused)
}

// Verifier checks bearer tokens against one key and one algorithm and returns the Viewer they name.
type Verifier struct {
	alg    string
	key    any
	parser *jwt.Parser
	leeway time.Duration
}

// tokenClaims is the JWT payload Verify reads and Mint writes.
type tokenClaims struct {
	jwt.RegisteredClaims
	Email string `json:"email,omitempty"`
	Name  string `json:"name,omitempty"`
	// Role is untyped so that a non-string role makes the viewer a
	// non-admin rather than failing the whole token.
	Role any `json:"role,omitempty"`
}

// NewVerifier returns a Verifier for cfg, or an error if neither or both keys are set, the HS256 secret is shorter than 32 bytes, the PEM is unparsable, or the key type is unsupported.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	hasSecret, hasPEM := len(cfg.HS256Secret) > 0, len(cfg.PublicKeyPEM) > 0
	switch {
	case hasSecret && hasPEM:
		return nil, errors.New("auth: set exactly one of HS256Secret and PublicKeyPEM, not both")
	case !hasSecret && !hasPEM:
		return nil, errors.New("auth: set one of HS256Secret and PublicKeyPEM")
	case cfg.Leeway < 0:
		return nil, errors.New("auth: leeway must not be negative")
	}

	v := &Verifier{}
	if hasSecret {
		if len(cfg.HS256Secret) < minHS256SecretLen {
			return nil, fmt.Errorf("auth: HS256 secret must be at least %d bytes", minHS256SecretLen)
		}
		v.alg = jwt.SigningMethodHS256.Alg()
		v.key = bytes.Clone(cfg.HS256Secret)
	} else {
		key, err := parsePublicKey(cfg.PublicKeyPEM)
		if err != nil {
			return nil, err
		}
		switch k := key.(type) {
		case *rsa.PublicKey:
			if k.N.BitLen() < minRSABits {
				return nil, fmt.Errorf("auth: RSA public key must be at least %d bits", minRSABits)
			}
			v.alg = jwt.SigningMethodRS256.Alg()
		case *ecdsa.PublicKey:
			if k.Curve != elliptic.P256() {
				return nil, errors.New("auth: unsupported ECDSA curve: only P-256 (ES256) is accepted")
			}
			v.alg = jwt.SigningMethodES256.Alg()
		default:
			return nil, errors.New("auth: unsupported public key type: need RSA or ECDSA P-256")
		}
		v.key = key
	}

	leeway := cfg.Leeway
	if leeway == 0 {
		leeway = defaultLeeway
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{v.alg}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
		jwt.WithStrictDecoding(),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	v.leeway = leeway
	return v, nil
}

// parsePublicKey returns the key in a single PEM "PUBLIC KEY" block, or an
// error that never quotes the input.
func parsePublicKey(pemBytes []byte) (any, error) {
	block, rest := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("auth: public key is not PEM encoded")
	}
	if block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("auth: PEM block is %q, want \"PUBLIC KEY\"", block.Type)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("auth: unexpected data after the PUBLIC KEY PEM block")
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, errors.New("auth: cannot parse PKIX public key")
	}
	return key, nil
}

// keyFunc returns the verifier's key only when the token's signing method is
// the exact type and algorithm this verifier was built for, so that neither
// alg "none" nor an HMAC token keyed with the public key can get through,
// even if WithValidMethods were ever loosened.
func (v *Verifier) keyFunc(t *jwt.Token) (any, error) {
	var ok bool
	switch v.alg {
	case jwt.SigningMethodHS256.Alg():
		_, ok = t.Method.(*jwt.SigningMethodHMAC)
	case jwt.SigningMethodRS256.Alg():
		_, ok = t.Method.(*jwt.SigningMethodRSA)
	case jwt.SigningMethodES256.Alg():
		_, ok = t.Method.(*jwt.SigningMethodECDSA)
	}
	if !ok || t.Method.Alg() != v.alg {
		return nil, errors.New("unexpected signing method")
	}
	return v.key, nil
}

// Verify returns the Viewer named by a properly signed, unexpired token, and refuses every other token with an error matching ErrUnauthenticated (and also ErrBadSubject when only the sub is wrong); an email or name claim the database cannot store is left out of the Viewer.
func (v *Verifier) Verify(token string) (Viewer, error) {
	if token == "" {
		return Viewer{}, fmt.Errorf("%w: empty", ErrUnauthenticated)
	}
	if len(token) > maxTokenLen {
		return Viewer{}, fmt.Errorf("%w: too long", ErrUnauthenticated)
	}
	var c tokenClaims
	t, err := v.parser.ParseWithClaims(token, &c, v.keyFunc)
	if err != nil {
		// Deliberately drop err: library errors may echo claim contents.
		return Viewer{}, fmt.Errorf("%w: %s", ErrUnauthenticated, reason(err))
	}
	if t == nil || !t.Valid {
		return Viewer{}, fmt.Errorf("%w: invalid", ErrUnauthenticated)
	}
	if c.Subject == "" {
		return Viewer{}, fmt.Errorf("%w: missing sub", ErrUnauthenticated)
	}
	if !usableSubject(c.Subject) {
		return Viewer{}, fmt.Errorf("%w: %w", ErrUnauthenticated, ErrBadSubject)
	}
	role, _ := c.Role.(string)
	return Viewer{
		UserID:  c.Subject,
		Email:   profileClaim(c.Email),
		Name:    profileClaim(c.Name),
		Admin:   role == roleAdmin,
		Expires: c.ExpiresAt.Add(v.leeway), // exp is required: the parser refused a token without it
	}, nil
}

// usableSubject reports whether sub can be a user id: at most 255 bytes,
// not only whitespace, and text the database can store (no NUL character;
// JSON decoding has already made it valid UTF-8). The sub is who the
// caller is: it is refused, never altered, since an altered sub would be
// someone else's id.
func usableSubject(sub string) bool {
	return len(sub) <= maxSubjectLen && strings.TrimSpace(sub) != "" && pgtext.Storable(sub)
}

// profileClaim returns an `email` or `name` claim as the viewer carries
// it: as sent, or "" (as if the token had none) when the database cannot
// store it. Those claims only describe the user, so the token stays good
// and the user keeps the API. Leaving the claim out is safer than
// cleaning it: removing the NUL from "victim@example.com\x00" would make
// another user's address out of one the identity provider may have let
// through as distinct, and an address is what a customer (and an
// invitation) is matched on.
func profileClaim(s string) string {
	if !pgtext.Storable(s) {
		return ""
	}
	return s
}

// reason maps a jwt error to a short fixed phrase that never contains token text.
func reason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return "bad signature"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "missing claim"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "not yet valid"
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "issued in the future"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "wrong issuer"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "wrong audience"
	default:
		return "invalid"
	}
}

// ViewerFromHeader returns the Viewer for an "Authorization: Bearer <token>" header value (scheme case-insensitive), ErrNoToken for an empty header, and ErrUnauthenticated for anything else it refuses.
func (v *Verifier) ViewerFromHeader(authorization string) (Viewer, error) {
	authorization = strings.TrimSpace(authorization)
	if authorization == "" {
		return Viewer{}, ErrNoToken
	}
	scheme, token, _ := strings.Cut(authorization, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return Viewer{}, fmt.Errorf("%w: not a bearer token", ErrUnauthenticated)
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return Viewer{}, fmt.Errorf("%w: empty bearer token", ErrUnauthenticated)
	}
	return v.Verify(token)
}

// Claims is what Mint puts in a token; Admin becomes the claim role:"admin".
type Claims struct {
	Subject string
	Email   string
	Name    string
	Admin   bool
}

// Signer mints HS256 tokens for the development `token` subcommand and tests.
type Signer struct {
	secret   []byte
	issuer   string
	audience string
}

// NewHS256Signer returns a Signer that mints HS256 tokens with secret, issuer and audience (empty issuer/audience are omitted).
func NewHS256Signer(secret []byte, issuer, audience string) *Signer {
	return &Signer{secret: bytes.Clone(secret), issuer: issuer, audience: audience}
}

// Mint returns a signed token for c valid for ttl, and refuses a secret shorter than 32 bytes, a subject Verify would refuse, and a non-positive ttl.
func (s *Signer) Mint(c Claims, ttl time.Duration) (string, error) {
	switch {
	case len(s.secret) < minHS256SecretLen:
		return "", fmt.Errorf("auth: HS256 secret must be at least %d bytes", minHS256SecretLen)
	case c.Subject == "":
		return "", errors.New("auth: token subject is required")
	case !usableSubject(c.Subject):
		return "", fmt.Errorf("auth: token subject must be text of at most %d bytes, not only spaces, without the NUL character", maxSubjectLen)
	case ttl <= 0:
		return "", errors.New("auth: token ttl must be positive")
	}
	now := time.Now()
	tc := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    s.issuer,
			Subject:   c.Subject,
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        uuid.NewString(),
		},
		Email: c.Email,
		Name:  c.Name,
	}
	if s.audience != "" {
		tc.Audience = jwt.ClaimStrings{s.audience}
	}
	if c.Admin {
		tc.Role = roleAdmin
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, tc).SignedString(s.secret)
	if err != nil {
		return "", errors.New("auth: cannot sign token")
	}
	return signed, nil
}
