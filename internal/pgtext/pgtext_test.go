package pgtext

import (
	"context"
	"database/sql"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"billingapi/internal/testenv"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
)

// TestCheck follows what PostgreSQL 15 answers for
// convert_from(bytes, 'UTF8') in a UTF8 database.
func TestCheck(t *testing.T) {
	for _, c := range []struct {
		name, s string
		want    error
	}{
		{"Empty", "", nil},
		{"ASCII", "Acme Inc", nil},
		{"Accents", "Zoë", nil},
		{"Emoji", "💳", nil},
		{"OtherControlCharacters", "a\x01\x1f\x7f\u0085b", nil},
		{"Noncharacter", "\uFFFE", nil},
		{"NUL", "a\x00b", ErrNUL},
		{"OnlyNUL", "\x00", ErrNUL},
		{"NULBeforeBadByte", "\x00\xff", ErrNUL},
		{"BadByte", "a\xffb", ErrInvalidUTF8},
		{"Surrogate", "\xed\xa0\x80", ErrInvalidUTF8},
		{"BeyondUnicode", "\xf4\x90\x80\x80", ErrInvalidUTF8},
		{"Overlong", "\xc0\xaf", ErrInvalidUTF8},
		{"Truncated", "\xe2\x82", ErrInvalidUTF8},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := Check(c.s); !errors.Is(got, c.want) || (got == nil) != (c.want == nil) {
				t.Errorf("Check(%q) = %v, want %v", c.s, got, c.want)
			}
			if got := Storable(c.s); got != (c.want == nil) {
				t.Errorf("Storable(%q) = %v", c.s, got)
			}
		})
	}
}

// TestCheckAgreesWithPostgreSQL sends PostgreSQL strings of random bytes,
// weighted towards the ones that matter (NUL, UTF-8 lead and continuation
// bytes), and expects it to refuse exactly those Check refuses.
func TestCheckAgreesWithPostgreSQL(t *testing.T) {
	db, err := sql.Open("pgx", testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	alphabet := []byte{0x00, 'a', 0x7f, 0x80, 0xbf, 0xc0, 0xc2, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff, 0xa0, 0x90}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		b := make([]byte, 1+rng.IntN(6))
		for j := range b {
			b[j] = alphabet[rng.IntN(len(alphabet))]
		}
		s := string(b)
		var n int
		pgErr := conn.QueryRowContext(ctx, `SELECT length($1::text)`, s).Scan(&n)
		if ctx.Err() != nil {
			t.Fatal(ctx.Err())
		}
		if (pgErr == nil) != Storable(s) {
			t.Fatalf("case %d: %q: PostgreSQL says %v, Check says %v", i, s, pgErr, Check(s))
		}
	}
}

func TestClipKeepsUTF8(t *testing.T) {
	if got := Clip("ééé", 3); got != "é" {
		t.Errorf("Clip = %q", got)
	}
}
