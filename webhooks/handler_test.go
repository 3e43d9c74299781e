package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"billingapi/auth"
	"billingapi/ent"
	_ "billingapi/ent/runtime" // hooks, validators and privacy policies
	"billingapi/ent/webhookevent"
	"billingapi/internal/database"
	"billingapi/internal/pgtext"
	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"

	"github.com/stripe/stripe-go/v76"
)

const (
	firstSecret  = "whsec_first_secret_1"
	secondSecret = "whsec_second_secret_2"
	// badRequestBody is all a refused client is told.
	badRequestBody = "bad request\n"
)

// lockedBuffer collects log output written from concurrent requests.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// handlerWorld is a Handler on a real (SQLite) database, with its logs and
// the number of times it woke the worker.
type handlerWorld struct {
	h        *Handler
	db       *ent.Client
	logs     *lockedBuffer
	notified *atomic.Int64
}

func newHandlerWorld(tb testing.TB) *handlerWorld {
	tb.Helper()
	return newHandlerWorldAt(tb, testenv.SQLite(tb))
}

// newHandlerWorldAt is newHandlerWorld on the database at url.
func newHandlerWorldAt(tb testing.TB, url string) *handlerWorld {
	tb.Helper()
	store := openStoreAt(tb, url)
	logs := &lockedBuffer{}
	notified := &atomic.Int64{}
	h := &Handler{
		DB:      store.Client,
		Secrets: []string{firstSecret, secondSecret},
		Log:     slog.New(slog.NewTextHandler(logs, nil)),
		Notify:  func() { notified.Add(1) },
	}
	return &handlerWorld{h: h, db: store.Client, logs: logs, notified: notified}
}

// svc is the webhook service's context, which may read webhook_events.
func svc() context.Context {
	return auth.NewContext(context.Background(), auth.ServiceViewer(auth.WebhooksService))
}

func (w *handlerWorld) rows(tb testing.TB, eventID string) int {
	tb.Helper()
	n, err := w.db.WebhookEvent.Query().Where(webhookevent.StripeEventID(eventID)).Count(svc())
	if err != nil {
		tb.Fatalf("count events: %v", err)
	}
	return n
}

func (w *handlerWorld) total(tb testing.TB) int {
	tb.Helper()
	n, err := w.db.WebhookEvent.Query().Count(svc())
	if err != nil {
		tb.Fatalf("count events: %v", err)
	}
	return n
}

// post sends body with the header (nil: no Stripe-Signature header at all).
func post(h http.Handler, method string, body []byte, header *string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "/webhooks/stripe", bytes.NewReader(body))
	if header != nil {
		req.Header["Stripe-Signature"] = []string{*header}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// event is a payment_intent.succeeded event with the given id.
func event(id string) []byte {
	return stripefake.Event(id, "payment_intent.succeeded",
		stripefake.PaymentIntentJSON("pi_"+id, "succeeded", 1999, "usd", map[string]string{"purpose": "credits_pack"}),
		time.Now())
}

// eventWithVersion is an event whose api_version is version.
func eventWithVersion(tb testing.TB, id, version string) []byte {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(event(id), &m); err != nil {
		tb.Fatal(err)
	}
	m["api_version"] = version
	b, err := json.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func ptr(s string) *string { return &s }

// assertGeneric fails when a response tells the client more than the
// status's generic text, or carries a secret.
func assertGeneric(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	body := rec.Body.String()
	for _, s := range []string{firstSecret, secondSecret, "whsec_"} {
		if strings.Contains(body, s) {
			t.Errorf("response carries %q: %q", s, body)
		}
	}
	want := map[int]string{
		http.StatusOK:                    `{"received":true}`,
		http.StatusBadRequest:            badRequestBody,
		http.StatusRequestEntityTooLarge: "payload too large\n",
		http.StatusMethodNotAllowed:      "method not allowed\n",
		http.StatusServiceUnavailable:    "temporarily unavailable\n",
	}[rec.Code]
	if body != want {
		t.Errorf("body = %q, want exactly %q", body, want)
	}
}

func TestSignatureVerification(t *testing.T) {
	w := newHandlerWorld(t)
	now := time.Now()
	sign := func(body []byte, secret string, at time.Time) *string {
		return ptr(stripefake.Sign(body, secret, at))
	}
	oversized := bytes.Repeat([]byte{' '}, MaxBody+1)
	atLimit := bytes.Repeat([]byte{'x'}, MaxBody)

	type request struct {
		method string
		body   []byte
		header *string
	}
	rows := []struct {
		name string
		req  func() request
		want int
		// stored is the event id that must have exactly one row after
		// the request ("" when nothing may be stored).
		stored string
	}{
		{"ValidSignatureWithFirstSecretIsStored", func() request {
			b := event("evt_first")
			return request{http.MethodPost, b, sign(b, firstSecret, now)}
		}, 200, "evt_first"},
		{"SecondOfTwoRotatedSecretsIsAccepted", func() request {
			b := event("evt_second")
			return request{http.MethodPost, b, sign(b, secondSecret, now)}
		}, 200, "evt_second"},
		{"WrongSecretIsRefused", func() request {
			b := event("evt_wrong_secret")
			return request{http.MethodPost, b, sign(b, "whsec_not_configured_9", now)}
		}, 400, ""},
		{"TimestampSixMinutesOldIsRefused", func() request {
			b := event("evt_too_old")
			return request{http.MethodPost, b, sign(b, firstSecret, time.Now().Add(-6*time.Minute))}
		}, 400, ""},
		{"TimestampFourMinutesOldIsAccepted", func() request {
			b := event("evt_four_min_old")
			return request{http.MethodPost, b, sign(b, firstSecret, time.Now().Add(-4*time.Minute))}
		}, 200, "evt_four_min_old"},
		{"TimestampSixMinutesInTheFutureIsRefused", func() request {
			b := event("evt_future")
			return request{http.MethodPost, b, sign(b, firstSecret, time.Now().Add(6*time.Minute))}
		}, 400, ""},
		{"TimestampOneMinuteInTheFutureIsAccepted", func() request {
			b := event("evt_slightly_future")
			return request{http.MethodPost, b, sign(b, firstSecret, time.Now().Add(time.Minute))}
		}, 200, "evt_slightly_future"},
		{"MissingHeaderIsRefused", func() request {
			return request{http.MethodPost, event("evt_no_header"), nil}
		}, 400, ""},
		{"EmptyHeaderIsRefused", func() request {
			return request{http.MethodPost, event("evt_empty_header"), ptr("")}
		}, 400, ""},
		{"MalformedHeaderNonNumericTimestampIsRefused", func() request {
			return request{http.MethodPost, event("evt_bad_t"), ptr("t=abc,v1=zz")}
		}, 400, ""},
		{"MalformedHeaderGarbageIsRefused", func() request {
			return request{http.MethodPost, event("evt_garbage_header"), ptr("garbage")}
		}, 400, ""},
		{"MalformedHeaderWithoutTimestampIsRefused", func() request {
			return request{http.MethodPost, event("evt_no_t"), ptr("v1=deadbeef")}
		}, 400, ""},
		{"ValidSignatureWithoutTimestampIsRefused", func() request {
			b := event("evt_sig_no_t")
			h := *sign(b, firstSecret, now)
			return request{http.MethodPost, b, ptr(h[strings.Index(h, ",")+1:])}
		}, 400, ""},
		{"MalformedHeaderWithoutSignatureIsRefused", func() request {
			return request{http.MethodPost, event("evt_no_v1"), ptr("t=123")}
		}, 400, ""},
		{"BodyChangedByOneByteAfterSigningIsRefused", func() request {
			b := event("evt_tampered")
			h := sign(b, firstSecret, now)
			t := bytes.Clone(b)
			i := bytes.Index(t, []byte(`"amount":1999`)) + len(`"amount":1`)
			t[i] = '0' // 1999 → 1099
			return request{http.MethodPost, t, h}
		}, 400, ""},
		{"OversizedSignedBodyIsTooLarge", func() request {
			return request{http.MethodPost, oversized, sign(oversized, firstSecret, now)}
		}, 413, ""},
		{"BodyExactlyAtTheLimitButNotJSONIsRefused", func() request {
			return request{http.MethodPost, atLimit, sign(atLimit, firstSecret, now)}
		}, 400, ""},
		{"NonJSONBodyWithValidSignatureIsRefused", func() request {
			b := []byte("this is not json")
			return request{http.MethodPost, b, sign(b, firstSecret, now)}
		}, 400, ""},
		{"EmptyJSONObjectWithValidSignatureIsRefused", func() request {
			b := []byte(`{}`)
			return request{http.MethodPost, b, sign(b, firstSecret, now)}
		}, 400, ""},
		{"JSONArrayWithValidSignatureIsRefused", func() request {
			b := []byte(`[]`)
			return request{http.MethodPost, b, sign(b, firstSecret, now)}
		}, 400, ""},
		{"JSONNullWithValidSignatureIsRefused", func() request {
			b := []byte(`null`)
			return request{http.MethodPost, b, sign(b, firstSecret, now)}
		}, 400, ""},
		{"EventWithoutTypeWithValidSignatureIsRefused", func() request {
			b := []byte(`{"id":"evt_1"}`)
			return request{http.MethodPost, b, sign(b, firstSecret, now)}
		}, 400, ""},
		{"EventWithoutIDWithValidSignatureIsRefused", func() request {
			b := []byte(`{"type":"payment_intent.succeeded"}`)
			return request{http.MethodPost, b, sign(b, firstSecret, now)}
		}, 400, ""},
		{"DataWithoutObjectWithValidSignatureIsRefused", func() request {
			b := []byte(`{"id":"evt_no_object","type":"payment_intent.succeeded","data":{}}`)
			return request{http.MethodPost, b, sign(b, firstSecret, now)}
		}, 400, ""},
		{"DataObjectNotAnObjectWithValidSignatureIsRefused", func() request {
			b := []byte(`{"id":"evt_string_object","type":"payment_intent.succeeded","data":{"object":"pi_1"}}`)
			return request{http.MethodPost, b, sign(b, firstSecret, now)}
		}, 400, ""},
		{"CreatedNotANumberWithValidSignatureIsRefused", func() request {
			b := []byte(`{"id":"evt_bad_created","type":"payment_intent.succeeded","created":"yesterday","data":{"object":{}}}`)
			return request{http.MethodPost, b, sign(b, firstSecret, now)}
		}, 400, ""},
		{"EmptyBodyWithValidSignatureIsRefused", func() request {
			return request{http.MethodPost, nil, sign(nil, firstSecret, now)}
		}, 400, ""},
		{"GETIsMethodNotAllowed", func() request {
			b := event("evt_get")
			return request{http.MethodGet, nil, sign(b, firstSecret, now)}
		}, 405, ""},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			before := w.total(t)
			r := tc.req()
			rec := post(w.h, r.method, r.body, r.header)
			if rec.Code != tc.want {
				t.Fatalf("status = %d, want %d (body %q)", rec.Code, tc.want, rec.Body.String())
			}
			assertGeneric(t, rec)
			after := w.total(t)
			switch {
			case tc.stored == "" && after != before:
				t.Fatalf("a refused request stored %d rows", after-before)
			case tc.stored != "" && (after != before+1 || w.rows(t, tc.stored) != 1):
				t.Fatalf("rows %d → %d, rows for %s = %d; want exactly one stored", before, after, tc.stored, w.rows(t, tc.stored))
			}
			if tc.want == http.StatusMethodNotAllowed && rec.Header().Get("Allow") != http.MethodPost {
				t.Errorf("Allow = %q, want POST", rec.Header().Get("Allow"))
			}
		})
	}

	t.Run("OtherAPIVersionIsStoredAndTheMismatchLoggedOnce", func(t *testing.T) {
		const version = "2099-01-01"
		const logLine = "webhook API version differs"
		before := strings.Count(w.logs.String(), logLine)
		for _, id := range []string{"evt_odd_version_1", "evt_odd_version_2"} {
			b := eventWithVersion(t, id, version)
			rec := post(w.h, http.MethodPost, b, sign(b, firstSecret, time.Now()))
			if rec.Code != http.StatusOK {
				t.Fatalf("%s: status = %d, want 200 (accepted, not dropped)", id, rec.Code)
			}
			assertGeneric(t, rec)
			row, err := w.db.WebhookEvent.Query().Where(webhookevent.StripeEventID(id)).Only(svc())
			if err != nil {
				t.Fatalf("%s not stored: %v", id, err)
			}
			if row.APIVersion != version || row.Status != webhookevent.StatusReceived {
				t.Fatalf("%s stored with api_version %q status %s", id, row.APIVersion, row.Status)
			}
		}
		if n := strings.Count(w.logs.String(), logLine) - before; n != 1 {
			t.Fatalf("version mismatch logged %d times for two events, want once:\n%s", n, w.logs.String())
		}
		if !strings.Contains(w.logs.String(), version) {
			t.Errorf("the logged mismatch does not name the version %s", version)
		}
	})

	t.Run("DuplicateDeliveryAnswers200TwiceAndStoresOneRow", func(t *testing.T) {
		b := event("evt_duplicate")
		notified := w.notified.Load()
		for i := range 2 {
			rec := post(w.h, http.MethodPost, b, sign(b, firstSecret, time.Now()))
			if rec.Code != http.StatusOK {
				t.Fatalf("delivery %d: status = %d, want 200", i+1, rec.Code)
			}
			assertGeneric(t, rec)
		}
		if n := w.rows(t, "evt_duplicate"); n != 1 {
			t.Fatalf("rows = %d, want 1", n)
		}
		if n := w.notified.Load() - notified; n < 1 {
			t.Fatalf("the worker was not woken")
		}
	})

	t.Run("StoredRowCarriesTheEventFields", func(t *testing.T) {
		row, err := w.db.WebhookEvent.Query().Where(webhookevent.StripeEventID("evt_first")).Only(svc())
		if err != nil {
			t.Fatal(err)
		}
		if row.Type != "payment_intent.succeeded" || row.APIVersion != stripe.APIVersion || row.ObjectID != "pi_evt_first" ||
			row.Status != webhookevent.StatusReceived || row.Attempts != 0 || row.NextAttemptAt == nil || row.Livemode {
			t.Fatalf("row = %+v", row)
		}
		if !json.Valid(row.Payload) || !bytes.Contains(row.Payload, []byte(`"id":"evt_first"`)) {
			t.Fatalf("payload = %s", row.Payload)
		}
	})

	t.Run("LogsNeverCarryTheSecrets", func(t *testing.T) {
		logs := w.logs.String()
		for _, s := range []string{firstSecret, secondSecret, "whsec_"} {
			if strings.Contains(logs, s) {
				t.Errorf("logs carry %q", s)
			}
		}
		if !strings.Contains(logs, "webhook refused") {
			t.Errorf("refusals were not logged:\n%s", logs)
		}
	})
}

func FuzzWebhookEndpoint(f *testing.F) {
	w := newHandlerWorld(f)
	w.h.Log = slog.New(slog.DiscardHandler) // millions of refusals
	seed := event("evt_fuzz_seed")
	f.Add(seed, stripefake.Sign(seed, firstSecret, time.Now()), true)
	f.Add(seed, "", true)
	f.Add([]byte("garbage"), "garbage", false)
	f.Add([]byte("garbage"), "", true)
	f.Add([]byte{}, "", false)
	f.Add([]byte(`{"id":"evt_x","type":"x"}`), "t=1,v1=00", false)
	f.Add([]byte(`{"id":"evt_x","type":"invoice.paid","data":{"object":[]}}`), "", true)
	f.Fuzz(func(t *testing.T, body []byte, header string, signValid bool) {
		if signValid {
			header = stripefake.Sign(body, firstSecret, time.Now())
		}
		rec := post(w.h, http.MethodPost, body, &header)
		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusMethodNotAllowed, http.StatusRequestEntityTooLarge:
		case http.StatusServiceUnavailable:
			var ev stripe.Event
			if json.Unmarshal(body, &ev) == nil && len(ev.ID) > 255 {
				t.Fatalf("a signed event with a %d-byte id answers 503 with a healthy database "+
					"(see TestUnstorableEventIsRefusedNotDeferred)", len(ev.ID))
			}
			fallthrough
		default:
			t.Fatalf("status = %d (body %q) for body %.300q header %q; the database is healthy, so never 5xx",
				rec.Code, rec.Body.String(), body, header)
		}
		if strings.Contains(rec.Body.String(), "whsec_") {
			t.Fatalf("response carries a secret: %q", rec.Body.String())
		}
		if rec.Code == http.StatusOK {
			var ev stripe.Event
			if err := json.Unmarshal(body, &ev); err != nil || ev.ID == "" || ev.Type == "" {
				t.Fatalf("accepted a body that is not a Stripe event (id %q, type %q, err %v): %.300q", ev.ID, ev.Type, err, body)
			}
			if n, err := w.db.WebhookEvent.Query().Where(webhookevent.StripeEventID(ev.ID)).Count(svc()); err != nil || n != 1 {
				t.Fatalf("answered 200 but rows for %q = %d (%v)", ev.ID, n, err)
			}
		}
	})
}

func BenchmarkVerifySignature(b *testing.B) {
	h := &Handler{Secrets: []string{firstSecret, secondSecret}, Log: slog.New(slog.NewTextHandler(&lockedBuffer{}, nil))}
	body := event("evt_bench")
	for _, bc := range []struct{ name, secret string }{{"FirstSecret", firstSecret}, {"SecondSecret", secondSecret}} {
		header := stripefake.Sign(body, bc.secret, time.Now())
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := h.verify(body, header); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The tests below pin bugs found while writing this file. They fail until
// the bug is fixed; see each message.

func TestFutureTimestampCannotHideBehindASecondTimestamp(t *testing.T) {
	w := newHandlerWorld(t)
	// Signed (with a configured secret) ten minutes in the future, with
	// a harmless t= in front.
	future := time.Now().Add(10 * time.Minute)
	b := event("evt_second_t")
	header := "t=" + strconv.FormatInt(time.Now().Unix(), 10) + "," + stripefake.Sign(b, firstSecret, future)
	rec := post(w.h, http.MethodPost, b, &header)
	if rec.Code != http.StatusBadRequest || w.rows(t, "evt_second_t") != 0 {
		t.Fatalf("BUG: a signature stamped 10 minutes in the future is accepted (status %d, stored %d) when the "+
			"Stripe-Signature header carries an earlier t= first: handler.go:107 checks signatureTime (handler.go:139), the "+
			"FIRST t=, while stripe-go's parseSignatureHeader verifies against the LAST t=, so the 5-minute "+
			"future tolerance is bypassed. Fix: refuse a header with more than one t= (or check the last one, as "+
			"stripe-go does).", rec.Code, w.rows(t, "evt_second_t"))
	}
	assertGeneric(t, rec)
}

func TestClipKeepsValidUTF8(t *testing.T) {
	// Event fields and worker errors are clipped to their column's byte
	// length before they are stored; PostgreSQL refuses invalid UTF-8.
	s := strings.Repeat("a", 254) + "é" // 256 bytes; é is 2 bytes at 254..255
	got := pgtext.Clip(s, 255)
	if !utf8.ValidString(got) || len(got) > 255 {
		t.Errorf("BUG: clip(%d bytes, 255) cuts a multi-byte character in half (ends %q, valid UTF-8: %t): "+
			"handler.go:185 returns s[:n] on a byte boundary. PostgreSQL then refuses the row (SQLSTATE 22021 "+
			"\"invalid byte sequence for encoding UTF8\"), so a signed event with such a type/api_version/object id "+
			"answers 503 on every one of Stripe's retries (worker.go:164 clips last_error the same way). "+
			"Fix: back n off to a rune start (for n > 0 && !utf8.RuneStart(s[n]) { n-- }).",
			len(s), got[len(got)-2:], utf8.ValidString(got))
	}

	t.Run("PostgreSQL", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		store, err := database.Open(ctx, testenv.Postgres(t), database.Options{})
		if err != nil {
			t.Fatalf("open database: %v", err)
		}
		t.Cleanup(func() { _ = store.Close() })
		h := &Handler{DB: store.Client, Secrets: []string{firstSecret}, Log: slog.New(slog.NewTextHandler(&lockedBuffer{}, nil))}
		// A type too long to store is refused outright (400), never 503.
		b := stripefake.Event("evt_long_type", s, `{"id":"obj_1"}`, time.Now())
		if rec := post(h, http.MethodPost, b, ptr(stripefake.Sign(b, firstSecret, time.Now()))); rec.Code != http.StatusBadRequest {
			t.Errorf("a signed event with a 256-byte type answers %d, want 400", rec.Code)
		}
		// An api_version longer than its 64-byte column, ending in a 2-byte
		// character, is clipped to valid UTF-8 and stored.
		payload := strings.Replace(string(stripefake.Event("evt_long_version", "invoice.paid", `{"id":"in_1"}`, time.Now())),
			`"api_version":"`+stripe.APIVersion+`"`, `"api_version":"`+strings.Repeat("v", 63)+`é"`, 1)
		rec := post(h, http.MethodPost, []byte(payload), ptr(stripefake.Sign([]byte(payload), firstSecret, time.Now())))
		if rec.Code != http.StatusOK {
			t.Errorf("a signed event with a 65-byte api_version answers %d on PostgreSQL, want 200 (clipped, stored)", rec.Code)
		}
	})
}
