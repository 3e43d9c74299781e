package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"billingapi/internal/stripeevent"

	"github.com/google/uuid"
)

// The `trigger` subcommand sends the local server a signed Stripe event,
// as `stripe trigger` does, without a Stripe account or the Stripe CLI:
//
//	go run ./server trigger payment_intent.succeeded --workspace <uuid>
//
// The event's object has the shape of stripe-mock's fixture for it (fetched
// from STRIPE_API_BASE when set, else stripeevent.Sample, a trimmed copy),
// patched so that the server finds the workspace and sees the state the
// event type announces. It is signed with the first
// STRIPE_WEBHOOK_SECRET, so the server verifies it like one from Stripe.

// triggerTimeout bounds each HTTP request the subcommand makes.
const triggerTimeout = 10 * time.Second

// triggerKind is a kind of Stripe object an event can carry.
type triggerKind struct {
	prefix  string // id prefix: "pi", "sub", ...
	fixture string // stripe-mock path of a fixture of this kind
	object  string // its type, for stripeevent.Sample
}

var (
	kindPaymentIntent = triggerKind{"pi", "/v1/payment_intents/pi_trigger", "payment_intent"}
	kindCheckout      = triggerKind{"cs", "/v1/checkout/sessions/cs_trigger", "checkout.session"}
	kindSubscription  = triggerKind{"sub", "/v1/subscriptions/sub_trigger", "subscription"}
	kindInvoice       = triggerKind{"in", "/v1/invoices/in_trigger", "invoice"}
	kindPrice         = triggerKind{"price", "/v1/prices/price_trigger", "price"}
	kindProduct       = triggerKind{"prod", "/v1/products/prod_trigger", "product"}
	kindCustomer      = triggerKind{"cus", "/v1/customers/cus_trigger", "customer"}
)

// triggerEvents are the event types `trigger` can send, with their object.
var triggerEvents = map[string]triggerKind{
	"payment_intent.succeeded":             kindPaymentIntent,
	"payment_intent.payment_failed":        kindPaymentIntent,
	"checkout.session.completed":           kindCheckout,
	"customer.subscription.created":        kindSubscription,
	"customer.subscription.updated":        kindSubscription,
	"customer.subscription.deleted":        kindSubscription,
	"customer.subscription.trial_will_end": kindSubscription,
	"invoice.payment_succeeded":            kindInvoice,
	"invoice.payment_failed":               kindInvoice,
	"price.updated":                        kindPrice,
	"product.updated":                      kindProduct,
	"customer.deleted":                     kindCustomer,
}

// supportedTriggerEvents returns the supported event types, sorted.
func supportedTriggerEvents() []string { return slices.Sorted(maps.Keys(triggerEvents)) }

// triggerNeedsWorkspace reports whether an event type is about one
// workspace (catalog events are not).
func triggerNeedsWorkspace(eventType string) bool {
	return !strings.HasPrefix(eventType, "price.") && !strings.HasPrefix(eventType, "product.")
}

// triggerOptions are the subcommand's arguments.
type triggerOptions struct {
	eventType string
	workspace string // canonical UUID, or "" for catalog events
	customer  string
	plan      string
	url       string
}

// trigger is the `trigger` subcommand.
func trigger(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if strings.TrimSpace(getenv("APP_ENV")) == envProduction {
		return errors.New("trigger: sending development webhooks is disabled when APP_ENV=production")
	}
	opts, err := parseTriggerArgs(args, stderr)
	if err != nil {
		return err
	}
	cfg, err := LoadConfig(getenv)
	if err != nil {
		return err
	}
	if cfg.Production() {
		return errors.New("trigger: sending development webhooks is disabled when APP_ENV=production")
	}
	if len(cfg.Stripe.WebhookSecrets) == 0 {
		return errors.New("trigger: no STRIPE_WEBHOOK_SECRET is configured; set the same whsec_... secret the server verifies webhooks with (`make run` sets one)")
	}
	if opts.url == "" {
		if opts.url, err = defaultWebhookURL(cfg.HTTPAddr); err != nil {
			return err
		}
	}

	obj, err := triggerObject(ctx, cfg, opts, stderr)
	if err != nil {
		return err
	}
	payload := stripeevent.Event("", opts.eventType, string(obj), time.Now())
	var env struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(payload, &env); err != nil {
		return fmt.Errorf("trigger: %w", err)
	}

	status, body, err := postWebhook(ctx, opts.url, payload, stripeevent.Sign(payload, cfg.Stripe.WebhookSecrets[0], time.Now()))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "sent %s (%s) → HTTP %d\n", env.ID, opts.eventType, status)
	if status < 200 || status > 299 {
		return fmt.Errorf("trigger: %s answered HTTP %d: %s", opts.url, status, body)
	}
	return nil
}

// parseTriggerArgs reads EVENT_TYPE and the flags, in any order.
func parseTriggerArgs(args []string, stderr io.Writer) (triggerOptions, error) {
	var o triggerOptions
	fs := newFlagSet("trigger", stderr)
	fs.StringVar(&o.workspace, "workspace", "", "workspace id (UUID) the event is about; required except for price.* and product.*")
	fs.StringVar(&o.customer, "customer", "", "Stripe customer id (cus_...) to put on the object")
	fs.StringVar(&o.plan, "plan", "pro", "metadata.plan of subscriptions and Checkout sessions")
	fs.StringVar(&o.url, "url", "", "webhook endpoint (default http://localhost:<port of HTTP_ADDR>/webhooks/stripe/)")
	fs.Usage = func() {
		printCommandUsage(stderr, "trigger", fs)
		fmt.Fprintf(stderr, "\nevent types:\n  %s\n", strings.Join(supportedTriggerEvents(), "\n  "))
	}
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return o, err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	supported := "supported: " + strings.Join(supportedTriggerEvents(), ", ")
	switch len(positional) {
	case 0:
		return o, errors.New("trigger: an event type is required (" + supported + ")")
	case 1:
		o.eventType = positional[0]
	default:
		return o, fmt.Errorf("trigger: want one event type, got %q", positional)
	}
	if _, ok := triggerEvents[o.eventType]; !ok {
		return o, fmt.Errorf("trigger: unsupported event type %q (%s)", o.eventType, supported)
	}
	switch {
	case o.workspace != "":
		id, err := uuid.Parse(o.workspace)
		if err != nil {
			return o, fmt.Errorf("trigger: --workspace must be a workspace id (a UUID), got %q", o.workspace)
		}
		o.workspace = id.String()
	case triggerNeedsWorkspace(o.eventType):
		return o, fmt.Errorf("trigger: --workspace is required for %s", o.eventType)
	}
	if o.customer != "" && (!strings.HasPrefix(o.customer, "cus_") || !validKeyBody(o.customer[len("cus_"):])) {
		return o, fmt.Errorf("trigger: --customer must be a Stripe customer id (cus_...), got %q", o.customer)
	}
	if o.url != "" {
		if msg := checkHTTPURL(o.url); msg != "" {
			return o, fmt.Errorf("trigger: --url %s", msg)
		}
	}
	return o, nil
}

// defaultWebhookURL is the local server's webhook endpoint.
func defaultWebhookURL(httpAddr string) (string, error) {
	_, port, err := net.SplitHostPort(httpAddr)
	if err != nil || port == "" || port == "0" {
		return "", fmt.Errorf("trigger: cannot tell the server's port from HTTP_ADDR %q; pass --url", httpAddr)
	}
	return "http://" + net.JoinHostPort("localhost", port) + "/webhooks/stripe/", nil
}

// triggerObject returns the JSON of the event's object: stripe-mock's
// fixture when a Stripe API base is configured (a built-in shape when it
// cannot be fetched), patched for the event.
func triggerObject(ctx context.Context, cfg Config, o triggerOptions, stderr io.Writer) ([]byte, error) {
	kind := triggerEvents[o.eventType]
	var obj map[string]any
	if cfg.Stripe.APIBase != "" && cfg.Stripe.SecretKey != "" {
		var err error
		obj, err = fetchFixture(ctx, cfg.Stripe.APIBase, cfg.Stripe.SecretKey, kind.fixture)
		if err != nil {
			fmt.Fprintf(stderr, "trigger: using a built-in %s object: %v\n", kind.prefix, err)
			obj = nil
		}
	}
	if obj == nil {
		obj = stripeevent.Sample(kind.object)
	}
	patchTriggerObject(obj, kind, o, time.Now())
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("trigger: %w", err)
	}
	return b, nil
}

// fetchFixture GETs one object from the Stripe API at base (stripe-mock).
func fetchFixture(ctx context.Context, base, secretKey, path string) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(ctx, triggerTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+secretKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err // names the URL, never the key
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s%s answered HTTP %d", base, path, res.StatusCode)
	}
	obj, err := stripeevent.DecodeObject(body)
	if err != nil {
		return nil, fmt.Errorf("GET %s%s: not a JSON object", base, path)
	}
	return obj, nil
}

// postWebhook POSTs a signed event and returns the status and the start of
// the answer.
func postWebhook(ctx context.Context, url string, payload []byte, signature string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, triggerTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return 0, "", fmt.Errorf("trigger: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Stripe-Signature", signature)
	req.Header.Set("User-Agent", "billingapi-trigger")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("trigger: is the server running? %w", err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 512))
	return res.StatusCode, strings.TrimSpace(string(body)), nil
}

// newTriggerID returns a fresh Stripe-style id with prefix.
func newTriggerID(prefix string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return prefix + "_trigger_" + hex.EncodeToString(b)
}

// patchTriggerObject makes obj the object of o.eventType: a fresh id, the
// workspace in its metadata, the customer, and the status the event says.
func patchTriggerObject(obj map[string]any, kind triggerKind, o triggerOptions, now time.Time) {
	id := newTriggerID(kind.prefix)
	if kind.prefix == "cus" && o.customer != "" {
		id = o.customer // customer.deleted: the customer is the object
	}
	obj["id"] = id
	obj["livemode"] = false
	obj["created"] = now.Unix()
	meta := objMap(obj, "metadata")
	catalog := !triggerNeedsWorkspace(o.eventType)
	if o.workspace != "" && !catalog {
		meta["workspace_id"] = o.workspace
	}
	if o.customer != "" && kind.prefix != "cus" && !catalog {
		obj["customer"] = o.customer
	}
	day := int64(24 * 60 * 60)
	unix := now.Unix()

	switch o.eventType {
	case "payment_intent.succeeded", "payment_intent.payment_failed":
		obj["client_secret"] = id + "_secret_" + strings.TrimPrefix(newTriggerID("x"), "x_trigger_")
		for _, k := range []string{"canceled_at", "cancellation_reason", "next_action", "processing", "latest_charge"} {
			obj[k] = nil
		}
		if o.eventType == "payment_intent.succeeded" {
			obj["status"] = "succeeded"
			obj["amount_received"] = obj["amount"]
			obj["last_payment_error"] = nil
		} else {
			obj["status"] = "requires_payment_method"
			obj["amount_received"] = 0
			obj["last_payment_error"] = map[string]any{
				"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
				"message": "Your card has insufficient funds.",
			}
		}

	case "checkout.session.completed":
		meta["plan"] = o.plan
		obj["status"] = "complete"
		obj["payment_status"] = "paid"
		obj["url"] = nil
		obj["expires_at"] = unix + day
		if obj["currency"] == nil {
			obj["currency"] = "usd"
		}
		if obj["amount_total"] == nil {
			obj["amount_subtotal"], obj["amount_total"] = 2000, 2000
		}
		if obj["mode"] == "subscription" {
			obj["subscription"] = newTriggerID("sub")
			obj["payment_intent"] = nil
		} else {
			obj["payment_intent"] = newTriggerID("pi")
		}

	case "customer.subscription.created", "customer.subscription.updated",
		"customer.subscription.deleted", "customer.subscription.trial_will_end":
		meta["plan"] = o.plan
		periodStart, periodEnd := unix, unix+30*day
		obj["status"] = "active"
		obj["start_date"], obj["billing_cycle_anchor"] = periodStart, periodStart
		// stripe-go v76 (API 2023-10-16) reads the period on the
		// subscription; newer API versions keep it on the items.
		obj["current_period_start"], obj["current_period_end"] = periodStart, periodEnd
		obj["cancel_at_period_end"] = false
		for _, k := range []string{"cancel_at", "canceled_at", "ended_at", "trial_start", "trial_end",
			"pending_update", "pause_collection", "latest_invoice", "schedule", "transfer_data", "next_pending_invoice_item_invoice"} {
			obj[k] = nil
		}
		switch o.eventType {
		case "customer.subscription.deleted":
			obj["status"] = "canceled"
			obj["canceled_at"], obj["ended_at"] = unix, unix
			obj["cancellation_details"] = map[string]any{"comment": nil, "feedback": nil, "reason": "cancellation_requested"}
		case "customer.subscription.trial_will_end":
			obj["status"] = "trialing"
			obj["trial_start"], obj["trial_end"] = unix-11*day, unix+3*day
			obj["current_period_start"], obj["current_period_end"] = unix-11*day, unix+3*day
			periodStart, periodEnd = unix-11*day, unix+3*day
		}
		items := objMap(obj, "items")
		items["object"] = "list"
		items["url"] = "/v1/subscription_items?subscription=" + id
		if data, _ := items["data"].([]any); len(data) > 0 {
			if item, ok := data[0].(map[string]any); ok {
				item["id"] = newTriggerID("si")
				item["subscription"] = id
				item["created"] = periodStart
				item["current_period_start"], item["current_period_end"] = periodStart, periodEnd
			}
		}

	case "invoice.payment_succeeded", "invoice.payment_failed":
		sub := newTriggerID("sub")
		subMeta := map[string]any{}
		if o.workspace != "" {
			subMeta["workspace_id"] = o.workspace
		}
		subMeta["plan"] = o.plan
		// The server (stripe-go v76) finds the workspace in
		// subscription_details.metadata; newer API versions moved it to
		// parent.subscription_details.
		obj["subscription"] = sub
		obj["subscription_details"] = map[string]any{"metadata": subMeta}
		obj["parent"] = map[string]any{
			"type": "subscription_details", "quote_details": nil,
			"subscription_details": map[string]any{"metadata": subMeta, "subscription": sub},
		}
		obj["number"] = strings.ToUpper(strings.TrimPrefix(id, "in_trigger_")[:8]) + "-0001"
		obj["hosted_invoice_url"] = "https://invoice.stripe.com/i/" + id
		obj["invoice_pdf"] = "https://pay.stripe.com/invoice/" + id + "/pdf"
		obj["billing_reason"] = "subscription_cycle"
		obj["period_start"], obj["period_end"] = unix-30*day, unix
		obj["effective_at"], obj["webhooks_delivered_at"] = unix, unix
		obj["attempted"], obj["attempt_count"] = true, 1
		for _, k := range []string{"last_finalization_error", "from_invoice", "due_date", "latest_revision"} {
			obj[k] = nil
		}
		transitions := objMap(obj, "status_transitions")
		transitions["finalized_at"] = unix
		if o.eventType == "invoice.payment_succeeded" {
			obj["status"] = "paid"
			obj["amount_paid"] = obj["amount_due"]
			obj["amount_remaining"] = 0
			obj["next_payment_attempt"] = nil
			transitions["paid_at"] = unix
		} else {
			obj["status"] = "open"
			obj["amount_paid"] = 0
			obj["amount_remaining"] = obj["amount_due"]
			obj["next_payment_attempt"] = unix + 3*day
			transitions["paid_at"] = nil
		}
		if lines, ok := obj["lines"].(map[string]any); ok {
			lines["url"] = "/v1/invoices/" + id + "/lines"
			if data, _ := lines["data"].([]any); len(data) > 0 {
				if line, ok := data[0].(map[string]any); ok {
					line["invoice"] = id
				}
			}
		}

	case "product.updated":
		obj["updated"] = unix
	}
}

// objMap returns obj[key] as a map, replacing a missing or null value with
// an empty one.
func objMap(obj map[string]any, key string) map[string]any {
	m, ok := obj[key].(map[string]any)
	if !ok {
		m = map[string]any{}
		obj[key] = m
	}
	return m
}
