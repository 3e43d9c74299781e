package database_test

import (
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/stdlib"
)

// Every id ent writes or looks up is a uuid.UUID. The store's connections
// encode one as its 16 bytes, without pgx's driver.Valuer detour (format,
// fail, parse, encode), and it still round-trips.
func TestUUIDParametersEncodeDirectly(t *testing.T) {
	ctx, store := openPostgres(t)
	id := uuid.MustParse("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
	var text string
	if err := store.SQL.QueryRowContext(ctx, "SELECT $1::uuid::text", id).Scan(&text); err != nil {
		t.Fatal(err)
	}
	if text != id.String() {
		t.Fatalf("round trip: got %s, want %s", text, id)
	}
	// Where the parameter is text, not uuid, it is still the UUID's text.
	if err := store.SQL.QueryRowContext(ctx, "SELECT $1::text", id).Scan(&text); err != nil {
		t.Fatal(err)
	}
	if text != id.String() {
		t.Fatalf("as a text parameter: got %q, want %s", text, id)
	}
	var back uuid.UUID
	if err := store.SQL.QueryRowContext(ctx, "SELECT $1::uuid", &id).Scan(&back); err != nil {
		t.Fatal(err)
	}
	if back != id {
		t.Fatalf("pointer round trip: got %s, want %s", back, id)
	}

	conn, err := store.SQL.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		m := dc.(*stdlib.Conn).Conn().TypeMap()
		buf := make([]byte, 0, 64)
		for _, v := range []any{id, &id} {
			out, err := m.Encode(pgtype.UUIDOID, pgtype.BinaryFormatCode, v, buf)
			if err != nil {
				t.Fatalf("encode %T: %v", v, err)
			}
			if len(out) != 16 || [16]byte(out) != [16]byte(id) {
				t.Fatalf("encode %T: got %x, want the UUID's 16 bytes", v, out)
			}
		}
		if out, err := m.Encode(pgtype.UUIDOID, pgtype.BinaryFormatCode, (*uuid.UUID)(nil), buf); err != nil || out != nil {
			t.Fatalf("a nil *uuid.UUID: got %x, %v; want NULL", out, err)
		}
		// The detour allocates the text, an error and the parsed value;
		// the direct plans box the 16 bytes on their way to the codec.
		// ent binds a new row's id by pointer, other ids by value.
		for _, arg := range []any{id, &id} {
			allocs := testing.AllocsPerRun(100, func() {
				_, _ = m.Encode(pgtype.UUIDOID, pgtype.BinaryFormatCode, arg, buf)
			})
			if allocs > 1 {
				t.Errorf("encoding a %T parameter made %.0f allocations, want at most 1", arg, allocs)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
