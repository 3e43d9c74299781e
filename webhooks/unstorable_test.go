package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"billingapi/ent/webhookevent"
	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"

	"github.com/stripe/stripe-go/v76"
)

// eventWith returns body, a JSON event, with the envelope's fields in set
// replaced; numbers are kept exact (math.MaxInt64 stays itself).
func eventWith(tb testing.TB, body []byte, set map[string]any) []byte {
	tb.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		tb.Fatal(err)
	}
	for k, v := range set {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// eventAbout is a payment_intent.succeeded event with the given id about
// an object with the given id.
func eventAbout(id, objectID string) []byte {
	obj, _ := json.Marshal(map[string]any{"id": objectID, "object": "payment_intent", "status": "succeeded"})
	return stripefake.Event(id, "payment_intent.succeeded", string(obj), time.Now())
}

// refusedLine is what the endpoint logs for an event it can never store.
const refusedLine = "webhook refused: a verified event that can never be stored"

// A validly signed event with a field that no database can store (a NUL,
// a time beyond the years both databases order, an id longer than Stripe's)
// is refused with 400 and logged with its id, rather than answered 503:
// Stripe would retry a 503 for three days, every retry failing alike.
func TestUnstorableEventIsRefusedNotDeferred(t *testing.T) {
	longID := "evt_" + strings.Repeat("x", 300)
	year := func(y int) int64 { return time.Date(y, 12, 31, 23, 59, 59, 0, time.UTC).Unix() }
	cases := []struct {
		name string
		body func(t *testing.T) []byte
		// id is the event id; logged is what the refusal's log line must
		// show of it ("" for a stored event).
		id, logged string
		// reason is in the refusal's log line.
		reason string
	}{
		{"NULInObjectIDIsRefused", func(*testing.T) []byte { return eventAbout("evt_nul_object", "pi_\x00nul") },
			"evt_nul_object", "event_id=evt_nul_object", "object id contains a NUL character"},
		{"NULInAPIVersionIsRefused", func(t *testing.T) []byte {
			return eventWith(t, event("evt_nul_version"), map[string]any{"api_version": stripe.APIVersion + "\x00"})
		}, "evt_nul_version", "event_id=evt_nul_version", "api_version contains a NUL character"},
		{"NULInTypeIsRefused", func(t *testing.T) []byte {
			return eventWith(t, event("evt_nul_type"), map[string]any{"type": "payment_intent.succeeded\x00"})
		}, "evt_nul_type", "event_id=evt_nul_type", "type contains a NUL character"},
		{"NULInEventIDIsRefusedAndLoggedQuoted", func(*testing.T) []byte { return event("evt_nul\x00id") },
			"evt_nul\x00id", `event_id="\"evt_nul\\x00id\""`, "id contains a NUL character"},
		{"CreatedInTheYear300000IsRefused", func(t *testing.T) []byte {
			return eventWith(t, event("evt_year_300000"), map[string]any{"created": year(300000)})
		}, "evt_year_300000", "event_id=evt_year_300000", "outside the years 1 to 9999"},
		{"CreatedMaxInt64IsRefused", func(t *testing.T) []byte {
			return eventWith(t, event("evt_created_max"), map[string]any{"created": int64(math.MaxInt64)})
		}, "evt_created_max", "event_id=evt_created_max", "outside the years 1 to 9999"},
		{"CreatedMinInt64IsRefused", func(t *testing.T) []byte {
			return eventWith(t, event("evt_created_min"), map[string]any{"created": int64(math.MinInt64)})
		}, "evt_created_min", "event_id=evt_created_min", "outside the years 1 to 9999"},
		{"EventIDOver255BytesIsRefusedAndLoggedCut", func(*testing.T) []byte { return event(longID) },
			longID, `event_id="\"` + longID[:64] + `\"... (304 bytes)"`, "id is 304 bytes, more than 255"},
		{"ObjectIDOver255BytesIsRefused", func(*testing.T) []byte { return eventAbout("evt_long_object", "pi_"+strings.Repeat("y", 253)) },
			"evt_long_object", "event_id=evt_long_object", "object id is 256 bytes, more than 255"},
		{"GoodEventIsStored", func(*testing.T) []byte { return event("evt_good") }, "evt_good", "", ""},
		{"ObjectIDOf255BytesIsStored", func(*testing.T) []byte { return eventAbout("evt_object_255", "pi_"+strings.Repeat("y", 252)) },
			"evt_object_255", "", ""},
		{"CreatedInTheYear9999IsStored", func(t *testing.T) []byte {
			return eventWith(t, event("evt_year_9999"), map[string]any{"created": year(9999)})
		}, "evt_year_9999", "", ""},
		{"CreatedInTheYear1IsStored", func(t *testing.T) []byte {
			return eventWith(t, event("evt_year_1"), map[string]any{"created": time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).Unix()})
		}, "evt_year_1", "", ""},
	}
	for _, backend := range testenv.Databases() {
		t.Run(backend.Name, func(t *testing.T) {
			w := newHandlerWorldAt(t, backend.URL(t))
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					b := tc.body(t)
					var sent struct {
						Created int64 `json:"created"`
					}
					if err := json.Unmarshal(b, &sent); err != nil {
						t.Fatal(err)
					}
					before, notified, logged := w.total(t), w.notified.Load(), len(w.logs.String())
					rec := post(w.h, http.MethodPost, b, ptr(stripefake.Sign(b, firstSecret, time.Now())))
					assertGeneric(t, rec)
					logs := w.logs.String()[logged:]
					if tc.logged == "" {
						if rec.Code != http.StatusOK {
							t.Fatalf("status = %d, want 200; logs:\n%s", rec.Code, logs)
						}
						row, err := w.db.WebhookEvent.Query().Where(webhookevent.StripeEventID(tc.id)).Only(svc())
						if err != nil {
							t.Fatalf("not stored: %v", err)
						}
						if got := row.Created.Unix(); got != sent.Created {
							t.Fatalf("created stored as %v (%d), want %d", row.Created, got, sent.Created)
						}
						return
					}
					if rec.Code != http.StatusBadRequest {
						t.Fatalf("status = %d, want 400 (no retry can ever store it); logs:\n%s", rec.Code, logs)
					}
					if after := w.total(t); after != before {
						t.Fatalf("a refused event stored %d rows", after-before)
					}
					if w.notified.Load() != notified {
						t.Fatalf("the worker was woken for an event that was not stored")
					}
					line := ""
					for l := range strings.Lines(logs) {
						if strings.Contains(l, refusedLine) {
							line = l
						}
					}
					if line == "" {
						t.Fatalf("the refusal was not logged as %q:\n%s", refusedLine, logs)
					}
					if !strings.Contains(line, tc.logged) || !strings.Contains(line, tc.reason) || !strings.Contains(line, "level=ERROR") {
						t.Errorf("the refusal's log line lacks %q or %q (at ERROR):\n%s", tc.logged, tc.reason, line)
					}
					if strings.ContainsRune(line, 0) || strings.Count(line, "\n") != 1 || len(line) > 600 {
						t.Errorf("the log line is not one short line of text: %q", line)
					}
				})
			}
		})
	}
}

// Storing that fails for a reason that can heal (the database closed,
// down, or too slow to answer) is answered 503, so that Stripe retries;
// once the database answers again, the retry is stored.
func TestStorageFailureThatCanHealAnswers503(t *testing.T) {
	for _, backend := range testenv.Databases() {
		t.Run(backend.Name, func(t *testing.T) {
			url := backend.URL(t)
			t.Run("DatabaseClosed", func(t *testing.T) {
				store := openStoreAt(t, url)
				if err := store.Close(); err != nil {
					t.Fatal(err)
				}
				w := newHandlerWorldAt(t, url)
				w.h.DB = store.Client
				b := event("evt_db_closed")
				rec := post(w.h, http.MethodPost, b, ptr(stripefake.Sign(b, firstSecret, time.Now())))
				if rec.Code != http.StatusServiceUnavailable {
					t.Fatalf("status = %d, want 503 so that Stripe retries", rec.Code)
				}
				assertGeneric(t, rec)
				if w.notified.Load() != 0 {
					t.Fatalf("the worker was woken for an event that was not stored")
				}
				logs := w.logs.String()
				if !strings.Contains(logs, "webhook not stored; Stripe will retry") || !strings.Contains(logs, "event_id=evt_db_closed") ||
					strings.Contains(logs, refusedLine) {
					t.Fatalf("logs do not say the event will be retried:\n%s", logs)
				}
			})
			t.Run("InsertOutwaitsTheStoreTimeout", func(t *testing.T) {
				// Another transaction's uncommitted row with the same
				// event id holds the insert until the timeout.
				w := newHandlerWorldAt(t, url)
				tx, err := w.db.Tx(svc())
				if err != nil {
					t.Fatal(err)
				}
				b := event("evt_held")
				ev, _ := decodeEnvelope(b)
				if err := newEventRow(tx.Client(), ev, "pi_evt_held", b).Exec(svc()); err != nil {
					_ = tx.Rollback()
					t.Fatal(err)
				}
				start := time.Now()
				rec := post(w.h, http.MethodPost, b, ptr(stripefake.Sign(b, firstSecret, time.Now())))
				if err := tx.Rollback(); err != nil {
					t.Fatal(err)
				}
				if rec.Code != http.StatusServiceUnavailable {
					t.Fatalf("status = %d after %v, want 503 so that Stripe retries", rec.Code, time.Since(start))
				}
				if waited := time.Since(start); waited < StoreTimeout || waited > StoreTimeout+2*time.Second {
					t.Errorf("answered after %v, want about StoreTimeout (%v)", waited, StoreTimeout)
				}
				// Stripe's retry, once nothing holds the row.
				deadline := time.Now().Add(15 * time.Second)
				for {
					rec = post(w.h, http.MethodPost, b, ptr(stripefake.Sign(b, firstSecret, time.Now())))
					if rec.Code == http.StatusOK || time.Now().After(deadline) {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
				if rec.Code != http.StatusOK || w.rows(t, "evt_held") != 1 {
					t.Fatalf("the retry answered %d, rows %d; want 200 and the event stored once", rec.Code, w.rows(t, "evt_held"))
				}
			})
		})
	}
}

// PostgreSQL's refusal of a value it can never hold is recognized as
// permanent, should checkStorable ever let one through; a closed database
// or an expired context is not.
func TestPostgresRefusalOfAValueIsNeverStorable(t *testing.T) {
	store := openStoreAt(t, testenv.Postgres(t))
	ev := &stripe.Event{ID: "evt_raw_nul", Type: "payment_intent.succeeded", Created: time.Now().Unix()}
	// Straight to the database, past checkStorable.
	err := newEventRow(store.Client, ev, "pi_\x00", []byte("{}")).Exec(svc())
	if err == nil || !neverStorable(err) {
		t.Errorf("a NUL refused by PostgreSQL: neverStorable(%v) = false, want true", err)
	}
	ev = &stripe.Event{ID: "evt_raw_year", Type: "payment_intent.succeeded", Created: time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC).Unix()}
	err = newEventRow(store.Client, ev, "", []byte("{}")).Exec(svc())
	if err == nil || !neverStorable(err) {
		t.Errorf("a time out of PostgreSQL's range: neverStorable(%v) = false, want true", err)
	}
	ctx, cancel := context.WithCancel(svc())
	cancel()
	ev = &stripe.Event{ID: "evt_raw_cancelled", Type: "payment_intent.succeeded", Created: time.Now().Unix()}
	if err := newEventRow(store.Client, ev, "", []byte("{}")).Exec(ctx); err == nil || neverStorable(err) {
		t.Errorf("an ended context: neverStorable(%v) = true, want false", err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = Store(context.Background(), store.Client, &stripe.Event{ID: "evt_raw_closed", Type: "x", Created: 1}, []byte("{}"))
	if err == nil || neverStorable(err) {
		t.Errorf("a closed database: neverStorable(%v) = true, want false", err)
	}
	if _, err := Store(context.Background(), store.Client, &stripe.Event{ID: "evt_\x00", Type: "x"}, nil); !errors.Is(err, errUnstorable) {
		t.Errorf("Store of an event with a NUL in its id = %v, want errUnstorable before the database is asked", err)
	}
}
