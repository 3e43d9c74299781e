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

	"billingapi/auth"
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

// TestSandboxDeleteWorkspace deletes a workspace with a paid subscription,
// a payment and a pending invitation: Stripe cancels the subscription at
// once, the owner can no longer reach the workspace nor its invitee join
// it, and its payments and invoices stay for platform admins (accounting).
func TestSandboxDeleteWorkspace(t *testing.T) {
	d := newSandboxDriver(t)
	if _, err := d.checkout("SUBSCRIPTION", "starter_monthly", "4242424242424242"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.until("paid", isStatus("ACTIVE", "FULL")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.payment("pm_card_visa", 1200); err != nil {
		t.Fatal(err)
	}
	var inv struct{ InviteWorkspaceMember struct{ ID string } }
	if err := d.gql(`mutation($w: ID!) { inviteWorkspaceMember(input: {workspaceId: $w, email: "Zoe@Example.com"}) { id } }`,
		map[string]any{"w": d.ws}, &inv); err != nil {
		t.Fatal(err)
	}
	var sub struct {
		Workspace struct {
			Subscription struct{ StripeSubscriptionID string }
		}
	}
	if err := d.gql(`query($w: ID!) { workspace(id: $w) { subscription { stripeSubscriptionId } } }`, map[string]any{"w": d.ws}, &sub); err != nil {
		t.Fatal(err)
	}

	var del struct{ DeleteWorkspace struct{ DeletedAt *string } }
	if err := d.gql(`mutation($w: ID!) { deleteWorkspace(input: {workspaceId: $w}) { deletedAt } }`, map[string]any{"w": d.ws}, &del); err != nil {
		t.Fatal(err)
	}
	if del.DeleteWorkspace.DeletedAt == nil {
		t.Fatal("deleteWorkspace answered no deletedAt")
	}
	s, err := d.sc.Subscriptions.Get(sub.Workspace.Subscription.StripeSubscriptionID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Status != "canceled" {
		t.Fatalf("Stripe subscription after deleteWorkspace: %s, want canceled", s.Status)
	}
	err = d.gql(`query($w: ID!) { workspace(id: $w) { id } }`, map[string]any{"w": d.ws}, nil)
	if e, ok := err.(scenarioError); !ok || e.Extensions["code"] != "NOT_FOUND" {
		t.Fatalf("the former owner reading the deleted workspace: %v, want NOT_FOUND", err)
	}
	var me struct {
		Me struct{ Workspaces struct{ TotalCount int } }
	}
	if err := d.gql(`{ me { workspaces { totalCount } } }`, nil, &me); err != nil || me.Me.Workspaces.TotalCount != 0 {
		t.Fatalf("the former owner's workspaces: %+v %v", me, err)
	}
	cfg, err := LoadConfig(func(string) string { return "" }) // the driver's server signs with the development defaults
	if err != nil {
		t.Fatal(err)
	}
	zoe, err := devToken(cfg, auth.Claims{Subject: "zoe", Email: "zoe@example.com"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	err = d.gqlAs(zoe, `mutation($i: ID!) { acceptInvitation(input: {invitationId: $i}) { id } }`, map[string]any{"i": inv.InviteWorkspaceMember.ID}, nil)
	if e, ok := err.(scenarioError); !ok || e.Extensions["code"] != "BAD_USER_INPUT" {
		t.Fatalf("accepting an invitation of the deleted workspace: %v, want BAD_USER_INPUT (revoked)", err)
	}
	var kept struct {
		Workspace struct {
			DeletedAt *string
			Payments  struct{ TotalCount int }
			Invoices  struct{ TotalCount int }
		}
	}
	if err := d.gqlAs(d.admin, `query($w: ID!) { workspace(id: $w) { deletedAt payments { totalCount } invoices { totalCount } } }`,
		map[string]any{"w": d.ws}, &kept); err != nil {
		t.Fatal(err)
	}
	if kept.Workspace.DeletedAt == nil || kept.Workspace.Payments.TotalCount < 1 || kept.Workspace.Invoices.TotalCount < 1 {
		t.Fatalf("a platform admin reading the deleted workspace's records: %+v", kept.Workspace)
	}
	// Deleting again finds nothing.
	err = d.gql(`mutation($w: ID!) { deleteWorkspace(input: {workspaceId: $w}) { id } }`, map[string]any{"w": d.ws}, nil)
	if e, ok := err.(scenarioError); !ok || e.Extensions["code"] != "NOT_FOUND" {
		t.Fatalf("deleting a deleted workspace: %v, want NOT_FOUND", err)
	}
}
