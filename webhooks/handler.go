// Package webhooks is Stripe's door into billing: an HTTP handler that
// verifies and durably stores each event before answering, and a worker
// that applies stored events through billing.ApplyEvent, retrying failures
// with backoff.
package webhooks

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"billingapi/auth"
	"billingapi/ent"
	"billingapi/ent/webhookevent"
	"billingapi/internal/pgtext"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"
)

// MaxBody is the largest webhook body accepted (Stripe's events are far
// smaller).
const MaxBody = 1 << 20

// StoreTimeout bounds storing an event: a database that does not answer
// in time is answered 503, and Stripe retries.
const StoreTimeout = 3 * time.Second

// Tolerance is how far a signature's timestamp may be from now, either way.
const Tolerance = 5 * time.Minute

// Handler receives Stripe's webhooks. It answers 200 once the verified
// event is stored (also for duplicates and types we do not handle), 400 for
// a bad signature or payload (with no details) and for a verified event
// that no retry could ever store (logged with its id), 413 for an
// oversized body, and 503 when storing fails for a reason that can heal
// (the database down or slow), so that Stripe retries and nothing is lost.
// Concurrent requests' events are stored together, in one INSERT
// (group.go).
type Handler struct {
	DB      *ent.Client
	Secrets []string
	Log     *slog.Logger
	// Notify is called after an event is stored, to wake the worker.
	Notify func()
	// Received, when set, is called with the type of each verified event
	// once it is stored (or found already stored), for metrics.
	Received func(eventType string)

	versionsLogged sync.Map
	groupOnce      sync.Once
	group          *groupStore // group commit of concurrent requests' events
}

var _ http.Handler = (*Handler)(nil)

// ServeHTTP implements the endpoint.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "payload too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	ev, err := h.verify(body, r.Header.Get("Stripe-Signature"))
	if err != nil {
		h.Log.WarnContext(r.Context(), "webhook refused", "reason", err.Error())
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	objectID := eventObjectID(ev)
	if err := checkStorable(ev, objectID); err != nil {
		h.refuseUnstorable(w, r, ev, err)
		return
	}
	h.noteVersion(ev)
	storeCtx, cancel := context.WithTimeout(r.Context(), StoreTimeout)
	defer cancel()
	if err := h.stores().store(storeCtx, ev, objectID, body); err != nil {
		if neverStorable(err) {
			h.refuseUnstorable(w, r, ev, err)
			return
		}
		h.Log.ErrorContext(r.Context(), "webhook not stored; Stripe will retry", "event_id", eventIDForLog(ev.ID), "err", err)
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return
	}
	if h.Received != nil {
		h.Received(string(ev.Type))
	}
	if h.Notify != nil {
		h.Notify()
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"received":true}`)
}

// refuseUnstorable answers 400 for a verified event that can never be
// stored: a 503 would have Stripe retry it for three days, every retry
// failing alike. The event is lost to billing, so it is logged as an
// error, with its id for finding it in Stripe's dashboard.
func (h *Handler) refuseUnstorable(w http.ResponseWriter, r *http.Request, ev *stripe.Event, err error) {
	h.Log.ErrorContext(r.Context(), "webhook refused: a verified event that can never be stored; Stripe will not retry it",
		"event_id", eventIDForLog(ev.ID), "reason", err.Error())
	http.Error(w, "bad request", http.StatusBadRequest)
}

// noteVersion logs, once per version, a verified event of another API
// version than stripe-go's: it is accepted, since refusing it would lose
// data, and decoded defensively.
func (h *Handler) noteVersion(ev *stripe.Event) {
	if ev.APIVersion == stripe.APIVersion {
		return
	}
	if _, seen := h.versionsLogged.LoadOrStore(ev.APIVersion, true); !seen {
		h.Log.Warn("webhook API version differs from stripe-go's; decoding defensively",
			"event_api_version", pgtext.Clip(ev.APIVersion, maxAPIVersionLen), "stripe_go_api_version", stripe.APIVersion)
	}
}

// stores returns the handler's group store, made on first use (a Handler
// is built as a struct literal).
func (h *Handler) stores() *groupStore {
	h.groupOnce.Do(func() { h.group = &groupStore{db: h.DB} })
	return h.group
}

// Refusal reasons, for logs only: the client is told nothing.
var (
	errNoSignature   = errors.New("missing Stripe-Signature")
	errBadSignature  = errors.New("no configured secret matches the signature")
	errFutureStamp   = errors.New("signature timestamp is in the future")
	errBadPayload    = errors.New("payload is not a Stripe event")
	errNoSecretsConf = errors.New("no webhook secret configured")
)

// verify checks the signature against every configured secret (rotation)
// and decodes the event's envelope; a signed body without an id or a type
// is not an event. Whether the event can be stored is checkStorable's.
func (h *Handler) verify(body []byte, header string) (*stripe.Event, error) {
	if header == "" {
		return nil, errNoSignature
	}
	if len(h.Secrets) == 0 {
		return nil, errNoSecretsConf
	}
	ts, err := signatureTime(header)
	if err != nil {
		return nil, err
	}
	if time.Until(ts) > Tolerance {
		return nil, errFutureStamp
	}
	for _, secret := range h.Secrets {
		err := webhook.ValidatePayloadWithTolerance(body, header, secret, Tolerance)
		if err == nil {
			ev, ok := decodeEnvelope(body)
			if !ok || ev.ID == "" || ev.Type == "" {
				return nil, errBadPayload
			}
			return ev, nil
		}
		switch {
		case errors.Is(err, webhook.ErrNoValidSignature):
			continue // maybe the next secret (rotation)
		case errors.Is(err, webhook.ErrNotSigned), errors.Is(err, webhook.ErrInvalidHeader), errors.Is(err, webhook.ErrTooOld):
			return nil, err
		default:
			return nil, errBadPayload // signed, but not an event
		}
	}
	return nil, errBadSignature
}

// decodeEnvelope decodes what the endpoint stores of a verified event: its
// envelope, and its object as raw JSON. stripe-go's Event also decodes the
// object into a map, which the endpoint never reads (a tenth of an
// acknowledgement's CPU in bench B4's profile); the worker decodes the
// stored payload again, with its object (billing.DecodeEvent). As with
// stripe-go's decoding, a body that is not a JSON object, or with a data
// that has no object or one that is not a JSON object, is not an event;
// the fields read here must have their types, the others are not looked
// at.
func decodeEnvelope(body []byte) (*stripe.Event, bool) {
	var env struct {
		ID         string           `json:"id"`
		Type       stripe.EventType `json:"type"`
		APIVersion string           `json:"api_version"`
		Created    int64            `json:"created"`
		Livemode   bool             `json:"livemode"`
		Data       *struct {
			Object json.RawMessage `json:"object"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, false
	}
	ev := &stripe.Event{ID: env.ID, Type: env.Type, APIVersion: env.APIVersion, Created: env.Created, Livemode: env.Livemode}
	if env.Data != nil {
		obj := bytes.TrimSpace(env.Data.Object)
		if len(obj) == 0 || (obj[0] != '{' && !bytes.Equal(obj, []byte("null"))) {
			return nil, false
		}
		ev.Data = &stripe.EventData{Raw: env.Data.Object}
	}
	return ev, true
}

// signatureTime reads t= from a Stripe-Signature header. A header with
// more than one t= is refused: stripe-go verifies against the last one,
// and a first one could otherwise hide a timestamp from the future check.
func signatureTime(header string) (time.Time, error) {
	var (
		ts    time.Time
		found bool
	)
	for _, part := range strings.Split(header, ",") {
		v, ok := strings.CutPrefix(strings.TrimSpace(part), "t=")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || found {
			return time.Time{}, webhook.ErrInvalidHeader
		}
		ts, found = time.Unix(n, 0), true
	}
	if !found {
		return time.Time{}, webhook.ErrInvalidHeader
	}
	return ts, nil
}

// Store saves a verified event's raw JSON once and reports whether it was
// new; a duplicate delivery is not an error. An event that can never be
// stored is refused with an error that neverStorable recognizes, before
// the database is asked. The webhook endpoint and the reconciler both
// ingest through it.
func Store(ctx context.Context, db *ent.Client, ev *stripe.Event, body []byte) (bool, error) {
	objectID := eventObjectID(ev)
	if err := checkStorable(ev, objectID); err != nil {
		return false, err
	}
	err := newEventRow(db, ev, objectID, body).
		OnConflictColumns(webhookevent.FieldStripeEventID).DoNothing().
		Exec(auth.NewContext(ctx, auth.ServiceViewer(auth.WebhooksService)))
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil // already stored: Stripe delivered it again
	}
	return err == nil, err
}

// newEventRow is the row that stores a verified event (checkStorable
// passed it): received, and due for the worker now.
func newEventRow(db *ent.Client, ev *stripe.Event, objectID string, body []byte) *ent.WebhookEventCreate {
	return db.WebhookEvent.Create().
		SetStripeEventID(ev.ID).
		SetType(string(ev.Type)).
		SetAPIVersion(pgtext.Clip(ev.APIVersion, maxAPIVersionLen)).
		SetCreated(time.Unix(ev.Created, 0).UTC()).
		SetLivemode(ev.Livemode).
		SetObjectID(objectID).
		SetPayload(body).
		SetStatus(webhookevent.StatusReceived).
		SetNextAttemptAt(time.Now())
}

// eventObjectID returns the id of the object an event is about, "" when
// its object has none (or no string one).
func eventObjectID(ev *stripe.Event) string {
	if ev.Data == nil {
		return ""
	}
	var obj struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(ev.Data.Raw, &obj)
	return obj.ID
}

// The limits of a webhook_events row (ent/schema/webhookevent.go).
const (
	// maxIDLen bounds the stored ids and type, in bytes: Stripe's are a
	// few dozen; anything longer is not Stripe's.
	maxIDLen = 255
	// maxAPIVersionLen bounds the stored api_version, in bytes; a longer
	// one is clipped (it is informational: the worker decodes the
	// payload).
	maxAPIVersionLen = 64
)

// The range of created (Unix seconds) that both databases store and
// order: years 1 to 9999. PostgreSQL holds more, but SQLite keeps times
// as text, which sorts in time order only with four-digit years (the
// worker claims events in created order), and time.Unix overflows near
// PostgreSQL's own limit.
var (
	minCreated = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	maxCreated = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC).Unix()
)

// errUnstorable is wrapped by the errors of events that can never be
// stored: a retry cannot succeed, so the endpoint refuses them (400)
// rather than deferring them (503), and the reconciler passes over them.
var errUnstorable = errors.New("the event can never be stored")

// checkStorable returns nil when every field of ev that the endpoint
// stores fits its column in both databases, else an error wrapping
// errUnstorable that names the field but never shows its value. objectID
// is eventObjectID(ev). livemode is a bool and the payload is stored as
// bytes: neither can be refused. It decides before the insert, rather than
// from the database's error, so that the answer does not depend on a
// driver's wording, and so that one such event never fails a group INSERT.
func checkStorable(ev *stripe.Event, objectID string) error {
	texts := []struct {
		field, value string
		maxLen       int // 0: clipped when stored
	}{
		{"id", ev.ID, maxIDLen},
		{"type", string(ev.Type), maxIDLen},
		{"object id", objectID, maxIDLen},
		{"api_version", ev.APIVersion, 0},
	}
	if ev.ID == "" {
		return fmt.Errorf("%w: it has no id", errUnstorable)
	}
	for _, t := range texts {
		if why := storableText(t.value, t.maxLen); why != "" {
			return fmt.Errorf("%w: its %s %s", errUnstorable, t.field, why)
		}
	}
	if ev.Created < minCreated || ev.Created > maxCreated {
		return fmt.Errorf("%w: its created (%d) is outside the years 1 to 9999", errUnstorable, ev.Created)
	}
	return nil
}

// storableText returns why s cannot be stored in a text column of at most
// maxLen bytes (0: any, as it is clipped), or "". What PostgreSQL refuses
// in text, whatever the column, is pgtext's rule.
func storableText(s string, maxLen int) string {
	if maxLen > 0 && len(s) > maxLen {
		return fmt.Sprintf("is %d bytes, more than %d", len(s), maxLen)
	}
	switch err := pgtext.Check(s); {
	case errors.Is(err, pgtext.ErrNUL):
		return "contains a NUL character"
	case err != nil:
		return "is not valid UTF-8"
	}
	return ""
}

// neverStorable reports whether storing an event failed for good: the
// event is one checkStorable refuses, ent's validators refused the row,
// or PostgreSQL refused one of its values (a byte sequence it cannot
// hold, a time or number out of range) rather than failing to answer.
// checkStorable refuses such events first; this catches what it would
// miss. Every other failure (the database down, slow, or restarting) can
// heal.
func neverStorable(err error) bool {
	if errors.Is(err, errUnstorable) || ent.IsValidationError(err) {
		return true
	}
	var pg *pgconn.PgError
	if !errors.As(err, &pg) {
		return false
	}
	switch pg.Code {
	case "22021", // character_not_in_repertoire: "invalid byte sequence for encoding"
		"22P05", // untranslatable_character
		"22001", // string_data_right_truncation
		"22003", // numeric_value_out_of_range
		"22008": // datetime_field_overflow: a time out of range
		return true
	}
	return false
}

// eventIDForLog returns an event's id as it may appear in a log line: as
// it is when it looks like Stripe's (letters, digits, underscores, at
// most 64), else quoted in ASCII, cut to 64 bytes and followed by its
// length, since it may be the very thing wrong with the event (a NUL, a
// line break, a megabyte). A quoted form cannot be mistaken for a plain
// one, which has no quotes.
func eventIDForLog(id string) string {
	const maxLogged = 64
	plain := id != "" && len(id) <= maxLogged
	for i := 0; plain && i < len(id); i++ {
		c := id[i]
		plain = c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
	}
	switch {
	case plain:
		return id
	case len(id) <= maxLogged:
		return strconv.QuoteToASCII(id)
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.QuoteToASCII(pgtext.Clip(id, maxLogged)), len(id))
}
