package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"billingapi/internal/testenv"

	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v76"
)

// triggerWorld is a running server and the environment `trigger` runs
// with: the same Stripe variables (so the same webhook secret), and --url
// pointing at the server.
type triggerWorld struct {
	*testServer
	env   map[string]string
	owner string // token of the workspace's owner
	ws    string
}

func newTriggerWorld(t *testing.T) *triggerWorld {
	t.Helper()
	mock := testenv.StripeMock(t)
	s := startServer(t, testenv.SQLite(t), withStripe(mock, nil))
	owner := s.token(t, "trigger-owner", false)
	return &triggerWorld{
		testServer: s,
		env:        withStripe(mock, nil),
		owner:      owner,
		ws:         s.createWorkspace(t, owner, "Trigger Co"),
	}
}

// runTrigger runs `server trigger args... --url <server>` with env.
func runTrigger(env map[string]string, url string, args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	if url != "" {
		args = append(args, "--url", url)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = run(ctx, append([]string{"trigger"}, args...), func(k string) string { return env[k] }, &out, &errOut)
	return out.String(), errOut.String(), err
}

func (w *triggerWorld) hookURL() string { return w.URL + "/webhooks/stripe/" }

var sentLine = regexp.MustCompile(`^sent (evt_\S+) \(([a-z_.]+)\) → HTTP (\d+)\n$`)

// send triggers eventType and returns the event id, failing unless the
// server answered 200.
func (w *triggerWorld) send(t *testing.T, eventType string, args ...string) string {
	t.Helper()
	out, errOut, err := runTrigger(w.env, w.hookURL(), append([]string{eventType}, args...)...)
	if err != nil {
		t.Fatalf("trigger %s: %v\nstdout: %s\nstderr: %s", eventType, err, out, errOut)
	}
	m := sentLine.FindStringSubmatch(out)
	if m == nil || m[2] != eventType || m[3] != "200" {
		t.Fatalf("trigger %s printed %q (stderr %q)", eventType, out, errOut)
	}
	if errOut != "" {
		t.Errorf("trigger %s wrote to stderr: %q", eventType, errOut)
	}
	assertNoSecrets(t, out+errOut)
	return m[1]
}

// eventually polls cond every 50ms for up to 10s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// webhookEvent returns the stored event's status and last error, as a
// platform admin sees them ("" while it is not stored).
func (w *triggerWorld) webhookEvent(t *testing.T, eventType, eventID string) (status, lastError, workspaceID string) {
	t.Helper()
	var out struct {
		WebhookEvents struct {
			Edges []struct {
				Node struct {
					StripeEventID, Status, WorkspaceID string
					LastError                          *string
				}
			}
		}
	}
	w.gql(t, w.token(t, "trigger-admin", true),
		`query($t: String!) { webhookEvents(type: $t, first: 100) { edges { node { stripeEventId status lastError workspaceId } } } }`,
		map[string]any{"t": eventType}).Decode(t, &out)
	for _, e := range out.WebhookEvents.Edges {
		if e.Node.StripeEventID == eventID {
			if e.Node.LastError != nil {
				lastError = *e.Node.LastError
			}
			return e.Node.Status, lastError, e.Node.WorkspaceID
		}
	}
	return "", "", ""
}

func TestTrigger(t *testing.T) {
	w := newTriggerWorld(t)

	t.Run("PaymentIntentSucceededRecordsAPayment", func(t *testing.T) {
		w.send(t, "payment_intent.succeeded", "--workspace", w.ws)
		const q = `query($id: ID!) { workspace(id: $id) { payments { edges { node { status amount currency purpose } } } } }`
		eventually(t, "a SUCCEEDED payment", func() bool {
			var out struct {
				Workspace struct {
					Payments struct {
						Edges []struct {
							Node struct {
								Status, Currency, Purpose string
								Amount                    int
							}
						}
					}
				}
			}
			w.gql(t, w.owner, q, map[string]any{"id": w.ws}).Decode(t, &out)
			for _, e := range out.Workspace.Payments.Edges {
				if e.Node.Status == "SUCCEEDED" {
					if e.Node.Amount <= 0 || e.Node.Currency != "usd" {
						t.Errorf("payment = %+v", e.Node)
					}
					return true
				}
			}
			return false
		})
	})

	t.Run("SubscriptionCreatedSetsTheWorkspaceSubscription", func(t *testing.T) {
		w.send(t, "customer.subscription.created", "--workspace", w.ws)
		const q = `query($id: ID!) { workspace(id: $id) { subscription { status plan currentPeriodEnd } } }`
		eventually(t, "workspace.subscription is set", func() bool {
			var out struct {
				Workspace struct {
					Subscription *struct {
						Status, Plan     string
						CurrentPeriodEnd *time.Time
					}
				}
			}
			w.gql(t, w.owner, q, map[string]any{"id": w.ws}).Decode(t, &out)
			sub := out.Workspace.Subscription
			if sub == nil {
				return false
			}
			if sub.Status != "ACTIVE" || sub.Plan != "pro" || sub.CurrentPeriodEnd == nil || !sub.CurrentPeriodEnd.After(time.Now()) {
				t.Errorf("subscription = %+v", *sub)
			}
			return true
		})
	})

	t.Run("EverySupportedTypeIsAppliedNotSkipped", func(t *testing.T) {
		// Every event type is accepted, and the worker applies it (or, for
		// catalog events, skips it for being about no workspace): none is
		// skipped as undecodable or for want of a workspace.
		other := w.createWorkspace(t, w.owner, "Trigger Types")
		for _, typ := range supportedTriggerEvents() {
			id := w.send(t, typ, "--workspace", other)
			eventually(t, typ+" is processed", func() bool {
				status, lastErr, ws := w.webhookEvent(t, typ, id)
				switch status {
				case "", "RECEIVED":
					return false
				case "PROCESSED":
					if ws != other {
						t.Errorf("%s: applied to workspace %q, want %q", typ, ws, other)
					}
				case "SKIPPED":
					if triggerNeedsWorkspace(typ) || !strings.HasPrefix(lastErr, "catalog event") {
						t.Errorf("%s: skipped: %s", typ, lastErr)
					}
				default:
					t.Errorf("%s: %s: %s", typ, status, lastErr)
				}
				return true
			})
		}
	})

	t.Run("CatalogEventsNeedNoWorkspace", func(t *testing.T) {
		w.send(t, "price.updated")
		w.send(t, "product.updated")
	})

	t.Run("UnknownTypeIsAnErrorListingTheSupportedOnes", func(t *testing.T) {
		_, _, err := runTrigger(w.env, w.hookURL(), "invoice.finalized", "--workspace", w.ws)
		if err == nil || !strings.Contains(err.Error(), `"invoice.finalized"`) || !strings.Contains(err.Error(), "payment_intent.succeeded") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("RefusedInProduction", func(t *testing.T) {
		env := validProductionEnv()
		for _, args := range [][]string{
			{"payment_intent.succeeded", "--workspace", w.ws},
			{"no.such.event", "--workspace", "not-a-uuid"}, // refused before the arguments are checked
		} {
			out, errOut, err := runTrigger(env, w.hookURL(), args...)
			if err == nil || !strings.Contains(err.Error(), "APP_ENV=production") {
				t.Fatalf("%q: err = %v", args, err)
			}
			if out != "" {
				t.Errorf("stdout = %q", out)
			}
			assertNoSecretValues(t, env, out+errOut+err.Error())
		}
	})

	t.Run("RefusedWithoutAWebhookSecret", func(t *testing.T) {
		env := withStripe(w.env["STRIPE_API_BASE"], map[string]string{"STRIPE_WEBHOOK_SECRET": ""})
		out, _, err := runTrigger(env, w.hookURL(), "payment_intent.succeeded", "--workspace", w.ws)
		if err == nil || !strings.Contains(err.Error(), "STRIPE_WEBHOOK_SECRET") || out != "" {
			t.Fatalf("err = %v, stdout = %q", err, out)
		}
	})

	t.Run("WorkspaceMustBeAUUIDAndIsRequired", func(t *testing.T) {
		for _, args := range [][]string{
			{"payment_intent.succeeded", "--workspace", "acme"},
			{"payment_intent.succeeded", "--workspace", w.ws + "0"},
			{"payment_intent.succeeded"},
			{"customer.deleted"},
		} {
			out, _, err := runTrigger(w.env, w.hookURL(), args...)
			if err == nil || !strings.Contains(err.Error(), "--workspace") || out != "" {
				t.Errorf("%q: err = %v, stdout = %q", args, err, out)
			}
		}
	})

	t.Run("BadCustomerAndExtraArguments", func(t *testing.T) {
		for _, args := range [][]string{
			{"payment_intent.succeeded", "--workspace", w.ws, "--customer", "sk_test_123"},
			{"payment_intent.succeeded", "invoice.payment_failed", "--workspace", w.ws},
			{"--workspace", w.ws},
		} {
			if out, errOut, err := runTrigger(w.env, w.hookURL(), args...); err == nil || out != "" {
				t.Errorf("%q: err = %v, stdout = %q", args, err, out)
			} else {
				assertNoSecrets(t, errOut)
			}
		}
	})

	t.Run("AWrongSecretIsAnErrorWithTheStatus", func(t *testing.T) {
		env := withStripe(w.env["STRIPE_API_BASE"], map[string]string{"STRIPE_WEBHOOK_SECRET": "whsec_not_the_servers_secret"})
		out, _, err := runTrigger(env, w.hookURL(), "payment_intent.succeeded", "--workspace", w.ws)
		if err == nil || !strings.Contains(err.Error(), "HTTP 400") || !strings.HasSuffix(out, "→ HTTP 400\n") {
			t.Fatalf("err = %v, stdout = %q", err, out)
		}
		if strings.Contains(out+err.Error(), "whsec_") {
			t.Errorf("the secret leaked: %q %v", out, err)
		}
	})
}

// assertNoSecretValues fails when s holds any secret env feeds in.
func assertNoSecretValues(t *testing.T, env map[string]string, s string) {
	t.Helper()
	for _, v := range secretValuesIn(env) {
		if v != "" && strings.Contains(s, v) {
			t.Errorf("output contains a secret value: %q", s)
		}
	}
}

func TestTriggerArgs(t *testing.T) {
	ws := uuid.NewString()
	o, err := parseTriggerArgs([]string{"--workspace", strings.ToUpper(ws), "customer.deleted", "--customer", "cus_ABC123"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.eventType != "customer.deleted" || o.workspace != ws || o.customer != "cus_ABC123" || o.plan != "pro" {
		t.Fatalf("options = %+v", o)
	}
	if got, err := defaultWebhookURL(":8000"); err != nil || got != "http://localhost:8000/webhooks/stripe/" {
		t.Fatalf("default URL = %q, %v", got, err)
	}
	if got, err := defaultWebhookURL("127.0.0.1:9090"); err != nil || got != "http://localhost:9090/webhooks/stripe/" {
		t.Fatalf("default URL = %q, %v", got, err)
	}
}

// TestTriggerObjects checks that every object, from stripe-mock's fixtures
// and from the built-in shapes, decodes into stripe-go v76's types (as the
// server decodes it) with the id, workspace, customer and status the event
// needs.
func TestTriggerObjects(t *testing.T) {
	sources := map[string]Config{"builtin": {}}
	sources["stripe-mock"] = Config{Stripe: StripeConfig{APIBase: testenv.StripeMock(t), SecretKey: testenv.StripeMockKey}}
	ws := uuid.NewString()
	for name, cfg := range sources {
		t.Run(name, func(t *testing.T) {
			for _, typ := range supportedTriggerEvents() {
				var stderr bytes.Buffer
				o := triggerOptions{eventType: typ, workspace: ws, customer: "cus_Trigger1", plan: "pro"}
				raw, err := triggerObject(context.Background(), cfg, o, &stderr)
				if err != nil {
					t.Fatalf("%s: %v", typ, err)
				}
				if stderr.Len() > 0 {
					t.Errorf("%s: stderr: %s", typ, stderr.String())
				}
				checkTriggerObject(t, typ, raw, ws)
			}
		})
	}
}

func checkTriggerObject(t *testing.T, typ string, raw []byte, ws string) {
	t.Helper()
	decode := func(v any) {
		t.Helper()
		if err := json.Unmarshal(raw, v); err != nil {
			t.Fatalf("%s: stripe-go cannot decode the object: %v\n%s", typ, err, raw)
		}
	}
	want := func(what string, got, want any) {
		t.Helper()
		if got != want {
			t.Errorf("%s: %s = %v, want %v", typ, what, got, want)
		}
	}
	customerOf := func(c *stripe.Customer) string {
		if c == nil {
			return ""
		}
		return c.ID
	}
	switch kind := triggerEvents[typ]; kind.prefix {
	case "pi":
		var pi stripe.PaymentIntent
		decode(&pi)
		want("id prefix", strings.HasPrefix(pi.ID, "pi_trigger_"), true)
		want("metadata.workspace_id", pi.Metadata["workspace_id"], ws)
		want("customer", customerOf(pi.Customer), "cus_Trigger1")
		want("amount > 0", pi.Amount > 0, true)
		if typ == "payment_intent.succeeded" {
			want("status", pi.Status, stripe.PaymentIntentStatusSucceeded)
			want("last_payment_error", pi.LastPaymentError == nil, true)
			want("amount_received", pi.AmountReceived, pi.Amount)
		} else {
			want("status", pi.Status, stripe.PaymentIntentStatusRequiresPaymentMethod)
			if pi.LastPaymentError == nil {
				t.Fatalf("%s: no last_payment_error", typ)
			}
			want("code", pi.LastPaymentError.Code, stripe.ErrorCodeCardDeclined)
			want("decline_code", pi.LastPaymentError.DeclineCode, stripe.DeclineCodeInsufficientFunds)
		}
	case "cs":
		var cs stripe.CheckoutSession
		decode(&cs)
		want("metadata.workspace_id", cs.Metadata["workspace_id"], ws)
		want("metadata.plan", cs.Metadata["plan"], "pro")
		want("customer", customerOf(cs.Customer), "cus_Trigger1")
		want("status", cs.Status, stripe.CheckoutSessionStatusComplete)
		want("payment_status", cs.PaymentStatus, stripe.CheckoutSessionPaymentStatusPaid)
		want("payment intent or subscription", cs.PaymentIntent != nil || cs.Subscription != nil, true)
	case "sub":
		var sub stripe.Subscription
		decode(&sub)
		want("id prefix", strings.HasPrefix(sub.ID, "sub_trigger_"), true)
		want("metadata.workspace_id", sub.Metadata["workspace_id"], ws)
		want("metadata.plan", sub.Metadata["plan"], "pro")
		want("customer", customerOf(sub.Customer), "cus_Trigger1")
		want("current period", sub.CurrentPeriodStart > 0 && sub.CurrentPeriodEnd > sub.CurrentPeriodStart, true)
		want("one item with a price", sub.Items != nil && len(sub.Items.Data) == 1 && sub.Items.Data[0].Price != nil, true)
		switch typ {
		case "customer.subscription.deleted":
			want("status", sub.Status, stripe.SubscriptionStatusCanceled)
			want("canceled_at set", sub.CanceledAt > 0, true)
		case "customer.subscription.trial_will_end":
			want("status", sub.Status, stripe.SubscriptionStatusTrialing)
			want("trial_end in the future", sub.TrialEnd > time.Now().Unix(), true)
		default:
			want("status", sub.Status, stripe.SubscriptionStatusActive)
			want("canceled_at", sub.CanceledAt, int64(0))
			want("cancel_at_period_end", sub.CancelAtPeriodEnd, false)
		}
	case "in":
		var inv stripe.Invoice
		decode(&inv)
		want("id prefix", strings.HasPrefix(inv.ID, "in_trigger_"), true)
		want("subscription_details set", inv.SubscriptionDetails != nil, true)
		if inv.SubscriptionDetails != nil {
			want("subscription_details.metadata.workspace_id", inv.SubscriptionDetails.Metadata["workspace_id"], ws)
		}
		want("customer", customerOf(inv.Customer), "cus_Trigger1")
		want("subscription set", inv.Subscription != nil && strings.HasPrefix(inv.Subscription.ID, "sub_"), true)
		want("amount_due > 0", inv.AmountDue > 0, true)
		want("currency", string(inv.Currency), "usd")
		if typ == "invoice.payment_succeeded" {
			want("status", inv.Status, stripe.InvoiceStatusPaid)
			want("amount_paid", inv.AmountPaid, inv.AmountDue)
		} else {
			want("status", inv.Status, stripe.InvoiceStatusOpen)
			want("amount_paid", inv.AmountPaid, int64(0))
		}
	case "price":
		var p stripe.Price
		decode(&p)
		want("id prefix", strings.HasPrefix(p.ID, "price_trigger_"), true)
		want("no workspace metadata", p.Metadata["workspace_id"], "")
	case "prod":
		var p stripe.Product
		decode(&p)
		want("id prefix", strings.HasPrefix(p.ID, "prod_trigger_"), true)
	case "cus":
		var c stripe.Customer
		decode(&c)
		want("id (--customer)", c.ID, "cus_Trigger1")
		want("metadata.workspace_id", c.Metadata["workspace_id"], ws)
	default:
		t.Fatalf("%s: no check for kind %q", typ, kind.prefix)
	}
}
