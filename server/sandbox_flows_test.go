package main

import (
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"
)

// These run the service end to end on the sandbox: each checks a behaviour
// that stripe-mock's stateless fixtures could not show.

func newSandboxDriver(t *testing.T) *driver {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	d, closeAll, err := openDriver(ctx, t.TempDir(), io.Discard, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeAll)
	return d
}

// keyCase is a mutation's input with some fields changed: each set to its
// value, or removed when the value is nil.
type keyCase struct {
	Name   string
	Change map[string]any
}

// with returns a copy of in with the case's changes.
func (c keyCase) with(in map[string]any) map[string]any {
	out := maps.Clone(in)
	for k, v := range c.Change {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

// assertKeyBindsEveryParameter sends mutation ($in: its input) as token
// with base, then each case of changed with the same idempotency key: each
// must be refused with BAD_USER_INPUT on idempotencyKey, and each case of
// same (the same parameters, however spelled) must answer the first
// object, its id read at path (dotted). Neither may make anything at
// Stripe: made counts the objects the sandbox holds. It returns the first
// object's id.
func (d *driver) assertKeyBindsEveryParameter(t *testing.T, token, mutation, path string, base map[string]any, changed, same []keyCase, made func() int) string {
	t.Helper()
	send := func(in map[string]any) (string, error) {
		var data map[string]any
		err := d.gqlAs(token, mutation, map[string]any{"in": in}, &data)
		var v any = data
		for _, field := range strings.Split(path, ".") {
			m, _ := v.(map[string]any)
			v = m[field]
		}
		id, _ := v.(string)
		return id, err
	}
	first, err := send(base)
	if err != nil || first == "" {
		t.Fatalf("first request: %q, %v", first, err)
	}
	before := made()
	for _, c := range changed {
		t.Run("SameKeyWith"+c.Name+"IsRefused", func(t *testing.T) {
			id, err := send(c.with(base))
			var ge scenarioError
			if !errors.As(err, &ge) || ge.Extensions["code"] != "BAD_USER_INPUT" || ge.Extensions["field"] != "idempotencyKey" ||
				!strings.Contains(ge.Message, "already used for a request with other details") {
				t.Fatalf("answered %q, %v; want BAD_USER_INPUT on idempotencyKey, in our words", id, err)
			}
		})
	}
	for _, c := range append([]keyCase{{Name: "TheSameParameters"}}, same...) {
		t.Run("SameKeyWith"+c.Name+"AnswersTheFirst", func(t *testing.T) {
			if id, err := send(c.with(base)); err != nil || id != first {
				t.Fatalf("answered %q, %v; want %s", id, err, first)
			}
		})
	}
	if n := made(); n != before {
		t.Fatalf("Stripe holds %d more objects after requests with a used key", n-before)
	}
	return first
}

// sandboxCount returns how many objects a list of the sandbox holds.
func sandboxCount(t *testing.T, it interface {
	Next() bool
	Err() error
}) int {
	t.Helper()
	n := 0
	for it.Next() {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatalf("list the sandbox: %v", err)
	}
	return n
}

type cardView struct {
	ID, Brand, Last4 string
	IsDefault        bool
}

func (d *driver) cards(t *testing.T) []cardView {
	t.Helper()
	var r struct {
		Workspace struct{ PaymentMethods []cardView }
	}
	if err := d.gql(`query($w: ID!) { workspace(id: $w) { paymentMethods { id brand last4 isDefault } } }`, map[string]any{"w": d.ws}, &r); err != nil {
		t.Fatal(err)
	}
	return r.Workspace.PaymentMethods
}

func TestSandboxSavedCards(t *testing.T) {
	d := newSandboxDriver(t)
	if _, err := d.checkout("SUBSCRIPTION", "pro_monthly", "4242 4242 4242 4242"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.until("paid Checkout", isStatus("ACTIVE", "FULL")); err != nil {
		t.Fatal(err)
	}

	t.Run("TheCardCheckoutSavedIsTheDefault", func(t *testing.T) {
		// Checkout keeps the card on the subscription, not on the customer.
		cards := d.cards(t)
		if len(cards) != 1 || cards[0].Last4 != "4242" || !cards[0].IsDefault {
			t.Fatalf("cards after Checkout: %+v", cards)
		}
		var r struct {
			Workspace struct {
				Billing struct{ DefaultPaymentMethod *cardView }
			}
		}
		if err := d.gql(`query($w: ID!) { workspace(id: $w) { billing { defaultPaymentMethod { last4 } } } }`, map[string]any{"w": d.ws}, &r); err != nil {
			t.Fatal(err)
		}
		if pm := r.Workspace.Billing.DefaultPaymentMethod; pm == nil || pm.Last4 != "4242" {
			t.Fatalf("the billing page's card: %+v", pm)
		}
	})

	t.Run("AListedCardCanBeMadeDefaultAndDetached", func(t *testing.T) {
		second, err := d.saveCard("pm_card_mastercard")
		if err != nil {
			t.Fatal(err)
		}
		cards := d.cards(t)
		if len(cards) != 2 || cards[0].ID != second || !cards[0].IsDefault || cards[1].IsDefault {
			t.Fatalf("after saving a second card as the default: %+v", cards)
		}
		old := cards[1].ID
		if err := d.gql(`mutation($w: ID!, $p: String!) { setDefaultPaymentMethod(workspaceId: $w, paymentMethodId: $p) { id } }`,
			map[string]any{"w": d.ws, "p": old}, nil); err != nil {
			t.Fatalf("setDefaultPaymentMethod on a listed card: %v", err)
		}
		if cards := d.cards(t); cards[0].ID != old || !cards[0].IsDefault {
			t.Fatalf("after making the first card the default again: %+v", cards)
		}
		if err := d.gql(`mutation($w: ID!, $p: String!) { detachPaymentMethod(workspaceId: $w, paymentMethodId: $p) { id } }`,
			map[string]any{"w": d.ws, "p": second}, nil); err != nil {
			t.Fatalf("detachPaymentMethod on a listed card: %v", err)
		}
		if cards := d.cards(t); len(cards) != 1 || cards[0].ID != old {
			t.Fatalf("after detaching: %+v", cards)
		}
	})
}

func TestSandboxCancelAndResumeClearCanceledAt(t *testing.T) {
	d := newSandboxDriver(t)
	if _, err := d.checkout("SUBSCRIPTION", "starter_monthly", "4242424242424242"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.until("paid", isStatus("ACTIVE", "FULL")); err != nil {
		t.Fatal(err)
	}
	if err := d.gql(`mutation($w: ID!) { cancelSubscription(input: {workspaceId: $w}) { status } }`, map[string]any{"w": d.ws}, nil); err != nil {
		t.Fatal(err)
	}
	s, err := d.until("canceled at period end", func(s scenarioState) bool { return s.CancelAtPeriodEnd && s.CanceledAt != nil })
	if err != nil {
		t.Fatal(err)
	}
	at, err := time.Parse(time.RFC3339, *s.CanceledAt)
	if err != nil || time.Since(at) > time.Hour || time.Since(at) < -time.Hour {
		t.Fatalf("canceledAt %v is not the time of the cancellation", *s.CanceledAt)
	}
	if err := d.gql(`mutation($w: ID!) { resumeSubscription(input: {workspaceId: $w}) { status } }`, map[string]any{"w": d.ws}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := d.until("resumed", func(s scenarioState) bool { return !s.CancelAtPeriodEnd && s.CanceledAt == nil && s.Status == "ACTIVE" }); err != nil {
		t.Fatal(err)
	}
}

func TestSandboxPortalAndClientSecrets(t *testing.T) {
	d := newSandboxDriver(t)
	t.Run("ThePortalURLOpensThePortal", func(t *testing.T) {
		var r struct{ CreateBillingPortalSession string }
		if err := d.gql(`mutation($w: ID!) { createBillingPortalSession(workspaceId: $w) }`, map[string]any{"w": d.ws}, &r); err != nil {
			t.Fatal(err)
		}
		u := r.CreateBillingPortalSession
		if strings.ContainsAny(u, "{}") || !strings.HasPrefix(u, d.sbURL+"/portal/bps_") {
			t.Fatalf("portal URL %q", u)
		}
		res, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(body), "owner@example.com") {
			t.Fatalf("portal page %d: %.300s", res.StatusCode, body)
		}
	})
	t.Run("TheClientSecretBelongsToThePaymentIntent", func(t *testing.T) {
		var r struct {
			CreatePaymentIntent struct{ PaymentIntentID, ClientSecret string }
		}
		if err := d.gql(`mutation($w: ID!) { createPaymentIntent(input: {workspaceId: $w, amount: 1500, currency: "usd", purpose: "credits_pack", idempotencyKey: "k1"}) { paymentIntentId clientSecret } }`,
			map[string]any{"w": d.ws}, &r); err != nil {
			t.Fatal(err)
		}
		pi := r.CreatePaymentIntent
		if !strings.HasPrefix(pi.ClientSecret, pi.PaymentIntentID+"_secret_") {
			t.Fatalf("client secret %q is not PaymentIntent %s's", pi.ClientSecret, pi.PaymentIntentID)
		}
	})
}
