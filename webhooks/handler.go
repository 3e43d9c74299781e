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
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"billingapi/auth"
	"billingapi/ent"
	"billingapi/ent/webhookevent"

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
// a bad signature or payload (with no details), 413 for an oversized body,
// and 503 when the event cannot be stored, so that Stripe retries and
// nothing is lost. Concurrent requests' events are stored together, in
// one INSERT (group.go).
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
	storeCtx, cancel := context.WithTimeout(r.Context(), StoreTimeout)
	defer cancel()
	if err := h.stores().store(storeCtx, ev, body); err != nil {
		h.Log.ErrorContext(r.Context(), "webhook not stored; Stripe will retry", "event_id", ev.ID, "err", err)
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
// and decodes the event. Events of another API version than stripe-go's
// are accepted: refusing them would lose data; the mismatch is logged once
// per version.
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
			if !ok || !storable(ev.ID) || !storable(string(ev.Type)) {
				return nil, errBadPayload
			}
			if ev.APIVersion != stripe.APIVersion {
				if _, seen := h.versionsLogged.LoadOrStore(ev.APIVersion, true); !seen {
					h.Log.Warn("webhook API version differs from stripe-go's; decoding defensively",
						"event_api_version", ev.APIVersion, "stripe_go_api_version", stripe.APIVersion)
				}
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
// stored payload in full. As with stripe-go's decoding, a body that is not
// a JSON object, or with a data that has no object or one that is not a
// JSON object, is not an event; the fields read here must have their
// types, the others are not looked at.
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
// new; a duplicate delivery is not an error. The webhook endpoint and the
// reconciler both ingest through it.
func Store(ctx context.Context, db *ent.Client, ev *stripe.Event, body []byte) (bool, error) {
	err := newEventRow(db, ev, body).
		OnConflictColumns(webhookevent.FieldStripeEventID).DoNothing().
		Exec(auth.NewContext(ctx, auth.ServiceViewer(auth.WebhooksService)))
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil // already stored: Stripe delivered it again
	}
	return err == nil, err
}

// newEventRow is the row that stores a verified event: received, and due
// for the worker now.
func newEventRow(db *ent.Client, ev *stripe.Event, body []byte) *ent.WebhookEventCreate {
	objectID := ""
	if ev.Data != nil {
		var obj struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(ev.Data.Raw, &obj)
		objectID = obj.ID
	}
	return db.WebhookEvent.Create().
		SetStripeEventID(ev.ID).
		SetType(clip(string(ev.Type), 255)).
		SetAPIVersion(clip(ev.APIVersion, 64)).
		SetCreated(time.Unix(ev.Created, 0).UTC()).
		SetLivemode(ev.Livemode).
		SetObjectID(clip(objectID, 255)).
		SetPayload(body).
		SetStatus(webhookevent.StatusReceived).
		SetNextAttemptAt(time.Now())
}

// storable reports whether an event's id or type can be stored: 1 to 255
// bytes of valid UTF-8 without NUL. A signed event that fails this can
// never be stored, so it is refused (400) rather than answered 503 forever.
func storable(s string) bool {
	return s != "" && len(s) <= 255 && utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// clip cuts s to at most n bytes without splitting a UTF-8 character.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
