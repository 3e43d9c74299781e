package relay

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestCursorRoundTrip(t *testing.T) {
	id := uuid.New()
	for _, c := range []Cursor{
		{ID: id},
		{ID: id, Time: time.Date(2026, 11, 27, 14, 0, 0, 123456000, time.UTC)},
		{ID: id, Time: time.Date(1999, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 7200))},
	} {
		got, err := ParseCursor(c.String())
		if err != nil {
			t.Fatalf("ParseCursor(%q): %v", c.String(), err)
		}
		if got.ID != c.ID || !got.Time.Equal(c.Time) || got.Time.IsZero() != c.Time.IsZero() {
			t.Errorf("round trip of %+v gave %+v", c, got)
		}
	}
}

func TestUnmarshalGQLRefusesWhatStringNeverWrites(t *testing.T) {
	good := Cursor{ID: uuid.New(), Time: time.Now()}.String()
	for _, v := range []any{nil, 12, true, "", "%%", good[:len(good)-2], good + "A", "eDox"} {
		var c Cursor
		if err := c.UnmarshalGQL(v); err == nil {
			t.Errorf("UnmarshalGQL(%#v) = %+v, want an error", v, c)
		}
	}
	var c Cursor
	if err := c.UnmarshalGQL(good); err != nil {
		t.Errorf("UnmarshalGQL(a cursor String wrote) = %v", err)
	}
}
