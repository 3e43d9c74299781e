package sandbox

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/stripe/stripe-go/v76"
)

// newCustomer creates a customer and waits for its event, so that a test
// can compare only the events that follow (b.since).
func (b *box) newCustomer(t *testing.T) *stripe.Customer {
	t.Helper()
	cu, err := b.sc.Customers.New(&stripe.CustomerParams{Email: stripe.String("pay@example.com")})
	if err != nil {
		t.Fatal(err)
	}
	return cu
}

// mark returns how many events have been delivered; since returns the
// types delivered after a mark.
func (b *box) mark(t *testing.T) int { t.Helper(); return len(b.delivered(t)) }

func (b *box) since(t *testing.T, n int) []string {
	t.Helper()
	return b.delivered(t)[n:]
}

// raw sends a form request with the test key and returns the status and
// the decoded body.
func (b *box) raw(t *testing.T, method, path string, form url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, b.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Authorization", "Bearer sk_test_x")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, m
}

// stripeErr returns err as a *stripe.Error, failing the test otherwise.
func stripeErr(t *testing.T, err error) *stripe.Error {
	t.Helper()
	var se *stripe.Error
	if !errors.As(err, &se) {
		t.Fatalf("want a Stripe error, got %v", err)
	}
	return se
}

// wantErr fails unless err is a Stripe error with the status and, when
// given, the code and param.
func wantErr(t *testing.T, err error, status int, code stripe.ErrorCode, param string) *stripe.Error {
	t.Helper()
	se := stripeErr(t, err)
	if se.HTTPStatusCode != status || (code != "" && se.Code != code) || (param != "" && se.Param != param) {
		t.Fatalf("error %d %s param %q (%s); want %d %s param %q", se.HTTPStatusCode, se.Code, se.Param, se.Msg, status, code, param)
	}
	return se
}

// noRedirects is a client that returns a redirect instead of following it.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// authenticate posts the 3D Secure page's form, as a script would.
func (b *box) authenticate(t *testing.T, id, result string) *http.Response {
	t.Helper()
	resp, err := noRedirects.PostForm(b.URL+"/3ds/"+id, url.Values{"result": {result}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestPaymentMethods(t *testing.T) {
	b := newBox(t)
	cu := b.newCustomer(t)
	other := b.newCustomer(t)

	t.Run("AttachTestTokenMakesACardOfTheCustomer", func(t *testing.T) {
		n := b.mark(t)
		pm, err := b.sc.PaymentMethods.Attach("pm_card_visa", &stripe.PaymentMethodAttachParams{Customer: stripe.String(cu.ID)})
		if err != nil {
			t.Fatal(err)
		}
		shaped(t, "payment_method", pm.LastResponse.RawJSON)
		if pm.Customer == nil || pm.Customer.ID != cu.ID || pm.Card.Last4 != "4242" || pm.Card.Brand != "visa" {
			t.Fatalf("attached %+v", pm)
		}
		got, err := b.sc.PaymentMethods.Get(pm.ID, nil)
		if err != nil || got.Customer.ID != cu.ID {
			t.Fatalf("get after attach: %v %v", got, err)
		}
		shaped(t, "payment_method", got.LastResponse.RawJSON)
		if ev := b.since(t, n); !slices.Equal(ev, []string{"payment_method.attached"}) {
			t.Fatalf("events %v", ev)
		}
	})

	t.Run("ListHasOnlyTheCustomersCardsNewestFirst", func(t *testing.T) {
		c2 := b.newCustomer(t)
		var want []string
		for _, tok := range []string{"pm_card_visa", "pm_card_mastercard"} {
			pm, err := b.sc.PaymentMethods.Attach(tok, &stripe.PaymentMethodAttachParams{Customer: stripe.String(c2.ID)})
			if err != nil {
				t.Fatal(err)
			}
			want = append([]string{pm.ID}, want...)
		}
		if _, err := b.sc.PaymentMethods.Attach("pm_card_visa", &stripe.PaymentMethodAttachParams{Customer: stripe.String(other.ID)}); err != nil {
			t.Fatal(err)
		}
		var got []string
		it := b.sc.PaymentMethods.List(&stripe.PaymentMethodListParams{Customer: stripe.String(c2.ID), Type: stripe.String("card")})
		for it.Next() {
			got = append(got, it.PaymentMethod().ID)
		}
		if it.Err() != nil || !slices.Equal(got, want) {
			t.Fatalf("list %v (%v), want %v", got, it.Err(), want)
		}
	})

	cases := []struct {
		name, pm, customer string
		status             int
		code               stripe.ErrorCode
		param              string
	}{
		{"AttachDeclinedCardIsA402", "pm_card_chargeDeclined", cu.ID, 402, "card_declined", "payment_method"},
		{"AttachToUnknownCustomerIs404", "pm_card_visa", "cus_nope", 404, "resource_missing", "customer"},
		{"AttachUnknownPaymentMethodIs404", "pm_nope", cu.ID, 404, "resource_missing", "payment_method"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.sc.PaymentMethods.Attach(tc.pm, &stripe.PaymentMethodAttachParams{Customer: stripe.String(tc.customer)})
			wantErr(t, err, tc.status, tc.code, tc.param)
		})
	}

	t.Run("AttachCardOfAnotherCustomerIsRefused", func(t *testing.T) {
		pm, err := b.sc.PaymentMethods.Attach("pm_card_visa", &stripe.PaymentMethodAttachParams{Customer: stripe.String(other.ID)})
		if err != nil {
			t.Fatal(err)
		}
		_, err = b.sc.PaymentMethods.Attach(pm.ID, &stripe.PaymentMethodAttachParams{Customer: stripe.String(cu.ID)})
		wantErr(t, err, 400, "", "payment_method")
	})

	t.Run("DetachClearsTheDefaultsThatNamedIt", func(t *testing.T) {
		pm, err := b.sc.PaymentMethods.Attach("pm_card_visa", &stripe.PaymentMethodAttachParams{Customer: stripe.String(cu.ID)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.sc.Customers.Update(cu.ID, &stripe.CustomerParams{InvoiceSettings: &stripe.CustomerInvoiceSettingsParams{
			DefaultPaymentMethod: stripe.String(pm.ID)}}); err != nil {
			t.Fatal(err)
		}
		// A subscription whose own default is the card (subscriptions are
		// another family's; one is stored directly here).
		subID := "sub_detachtest"
		b.locked(func(c *call) error {
			b.put(object{"id": subID, "object": "subscription", "customer": cu.ID, "default_payment_method": pm.ID, "created": int64(1)})
			return nil
		})
		n := b.mark(t)
		out, err := b.sc.PaymentMethods.Detach(pm.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		shaped(t, "payment_method", out.LastResponse.RawJSON)
		if out.Customer != nil {
			t.Fatalf("detached card still has customer %v", out.Customer.ID)
		}
		got, _ := b.sc.Customers.Get(cu.ID, nil)
		if got.InvoiceSettings.DefaultPaymentMethod != nil {
			t.Fatal("the customer's default is still the detached card")
		}
		b.mu.Lock()
		subDefault := b.get("subscription", subID)["default_payment_method"]
		b.mu.Unlock()
		if subDefault != nil {
			t.Fatalf("the subscription's default is still %v", subDefault)
		}
		if ev := b.since(t, n); !slices.Equal(ev, []string{"payment_method.detached", "customer.updated", "customer.subscription.updated"}) {
			t.Fatalf("events %v", ev)
		}
		// Our API reads the customer a detached card left from
		// previous_attributes.
		b.recv.mu.Lock()
		var detached stripe.Event
		for _, e := range b.recv.events {
			if e.Type == "payment_method.detached" {
				detached = e
			}
		}
		b.recv.mu.Unlock()
		if detached.Data.PreviousAttributes["customer"] != cu.ID {
			t.Fatalf("payment_method.detached previous_attributes %v", detached.Data.PreviousAttributes)
		}
		t.Run("DetachingAgainIsRefused", func(t *testing.T) {
			_, err := b.sc.PaymentMethods.Detach(pm.ID, nil)
			wantErr(t, err, 400, "", "payment_method")
		})
	})

	t.Run("GetUnknownIs404", func(t *testing.T) {
		_, err := b.sc.PaymentMethods.Get("pm_nope", nil)
		wantErr(t, err, 404, "resource_missing", "")
	})

	t.Run("CreateFromATestToken", func(t *testing.T) {
		pm, err := b.sc.PaymentMethods.New(&stripe.PaymentMethodParams{Type: stripe.String("card"),
			Card: &stripe.PaymentMethodCardParams{Token: stripe.String("tok_mastercard")}})
		if err != nil {
			t.Fatal(err)
		}
		shaped(t, "payment_method", pm.LastResponse.RawJSON)
		if pm.Card.Brand != "mastercard" || pm.Card.Last4 != "4444" || pm.Customer != nil {
			t.Fatalf("made %+v", pm.Card)
		}
	})

	t.Run("CreateFromRawCardDataIsRefusedByName", func(t *testing.T) {
		_, err := b.sc.PaymentMethods.New(&stripe.PaymentMethodParams{Type: stripe.String("card"),
			Card: &stripe.PaymentMethodCardParams{Number: stripe.String("4242424242424242"), ExpMonth: stripe.Int64(12), ExpYear: stripe.Int64(2034), CVC: stripe.String("123")}})
		se := wantErr(t, err, 501, "", "")
		if !strings.Contains(se.Msg, "card[number]") {
			t.Fatalf("refusal does not name it: %s", se.Msg)
		}
	})
}

func TestSetupIntents(t *testing.T) {
	b := newBox(t)
	newSI := func(t *testing.T, cus, pm string, confirm bool) (*stripe.SetupIntent, error) {
		p := &stripe.SetupIntentParams{Customer: stripe.String(cus), Usage: stripe.String("off_session"),
			AutomaticPaymentMethods: &stripe.SetupIntentAutomaticPaymentMethodsParams{Enabled: stripe.Bool(true)},
			Metadata:                map[string]string{"workspace_id": "w1"}}
		if pm != "" {
			p.PaymentMethod = stripe.String(pm)
		}
		if confirm {
			p.Confirm = stripe.Bool(true)
			p.ReturnURL = stripe.String("https://app.example/return")
		}
		return b.sc.SetupIntents.New(p)
	}

	t.Run("CreatedAwaitingAPaymentMethod", func(t *testing.T) {
		cu := b.newCustomer(t)
		n := b.mark(t)
		si, err := newSI(t, cu.ID, "", false)
		if err != nil {
			t.Fatal(err)
		}
		shaped(t, "setup_intent", si.LastResponse.RawJSON)
		if si.Status != "requires_payment_method" || !strings.HasPrefix(si.ClientSecret, si.ID+"_secret_") || si.Usage != "off_session" ||
			si.Metadata["workspace_id"] != "w1" {
			t.Fatalf("created %+v", si)
		}
		got, err := b.sc.SetupIntents.Get(si.ID, nil)
		if err != nil || got.Status != si.Status {
			t.Fatalf("get: %v %v", got, err)
		}
		if ev := b.since(t, n); !slices.Equal(ev, []string{"setup_intent.created"}) {
			t.Fatalf("events %v", ev)
		}
	})

	cases := []struct {
		name, card string
		status     stripe.SetupIntentStatus
		code       stripe.ErrorCode // of the 402, "" for none
		attached   bool
		events     []string
	}{
		{"GoodCardSucceedsAndIsAttached", "pm_card_visa", "succeeded", "", true,
			[]string{"setup_intent.created", "payment_method.attached", "setup_intent.succeeded"}},
		{"DecliningCardFailsTheSetUpWithA402", "pm_card_chargeDeclined", "requires_payment_method", "card_declined", false,
			[]string{"setup_intent.created", "setup_intent.setup_failed"}},
		{"ThreeDSecureCardRequiresAction", "pm_card_authenticationRequiredOnSetup", "requires_action", "", false,
			[]string{"setup_intent.created", "setup_intent.requires_action"}},
		{"AlwaysAuthenticateCardRequiresAction", "pm_card_authenticationRequired", "requires_action", "", false,
			[]string{"setup_intent.created", "setup_intent.requires_action"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cu := b.newCustomer(t)
			n := b.mark(t)
			si, err := newSI(t, cu.ID, tc.card, true)
			if tc.code != "" {
				se := wantErr(t, err, 402, tc.code, "")
				if se.SetupIntent == nil {
					t.Fatal("the 402 does not carry the SetupIntent")
				}
				si = se.SetupIntent
				if si.LastSetupError == nil || si.LastSetupError.Code != tc.code {
					t.Fatalf("last_setup_error %+v", si.LastSetupError)
				}
			} else if err != nil {
				t.Fatal(err)
			} else {
				shaped(t, "setup_intent", si.LastResponse.RawJSON)
			}
			got, err := b.sc.SetupIntents.Get(si.ID, nil)
			if err != nil || got.Status != tc.status {
				t.Fatalf("status %v (%v), want %s", got.Status, err, tc.status)
			}
			shaped(t, "setup_intent", got.LastResponse.RawJSON)
			if tc.status == "requires_action" {
				if got.NextAction == nil || got.NextAction.RedirectToURL == nil || got.NextAction.RedirectToURL.URL != b.URL+"/3ds/"+si.ID ||
					got.NextAction.RedirectToURL.ReturnURL != "https://app.example/return" {
					t.Fatalf("next_action %+v", got.NextAction)
				}
			}
			n2 := 0
			for it := b.sc.PaymentMethods.List(&stripe.PaymentMethodListParams{Customer: stripe.String(cu.ID), Type: stripe.String("card")}); it.Next(); n2++ {
			}
			if (n2 == 1) != tc.attached {
				t.Fatalf("%d cards attached; attached=%v wanted", n2, tc.attached)
			}
			if ev := b.since(t, n); !slices.Equal(ev, tc.events) {
				t.Fatalf("events %v, want %v", ev, tc.events)
			}
		})
	}

	t.Run("PassedThreeDSecureAttachesTheCardAndLaterPaymentsSkipIt", func(t *testing.T) {
		cu := b.newCustomer(t)
		si, err := newSI(t, cu.ID, "pm_card_authenticationRequiredOnSetup", true)
		if err != nil {
			t.Fatal(err)
		}
		n := b.mark(t)
		resp := b.authenticate(t, si.ID, "pass")
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("3DS form answered %d, want a redirect to the return_url", resp.StatusCode)
		}
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if loc.Host != "app.example" || loc.Query().Get("setup_intent") != si.ID || loc.Query().Get("redirect_status") != "succeeded" ||
			loc.Query().Get("setup_intent_client_secret") != si.ClientSecret {
			t.Fatalf("redirected to %s", loc)
		}
		got, _ := b.sc.SetupIntents.Get(si.ID, nil)
		if got.Status != "succeeded" || got.NextAction != nil {
			t.Fatalf("after 3DS: %s %+v", got.Status, got.NextAction)
		}
		if ev := b.since(t, n); !slices.Equal(ev, []string{"payment_method.attached", "setup_intent.succeeded"}) {
			t.Fatalf("events %v", ev)
		}
		// Stripe's 4000002500003155: once set up, off-session payments go
		// through without authentication.
		pi, err := b.sc.PaymentIntents.New(&stripe.PaymentIntentParams{Amount: stripe.Int64(1000), Currency: stripe.String("usd"),
			Customer: stripe.String(cu.ID), PaymentMethod: stripe.String(got.PaymentMethod.ID), Confirm: stripe.Bool(true), OffSession: stripe.Bool(true),
			PaymentMethodTypes: stripe.StringSlice([]string{"card"})})
		if err != nil || pi.Status != "succeeded" {
			t.Fatalf("off-session payment after set-up: %v %v", pi, err)
		}
	})

	t.Run("FailedThreeDSecureFailsTheSetUp", func(t *testing.T) {
		cu := b.newCustomer(t)
		si, err := newSI(t, cu.ID, "pm_card_authenticationRequiredOnSetup", true)
		if err != nil {
			t.Fatal(err)
		}
		n := b.mark(t)
		if resp := b.authenticate(t, si.ID, "fail"); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("3DS form answered %d", resp.StatusCode)
		}
		got, _ := b.sc.SetupIntents.Get(si.ID, nil)
		if got.Status != "requires_payment_method" || got.LastSetupError == nil || got.LastSetupError.Code != "setup_intent_authentication_failure" {
			t.Fatalf("after failed 3DS: %s %+v", got.Status, got.LastSetupError)
		}
		if ev := b.since(t, n); !slices.Equal(ev, []string{"setup_intent.setup_failed"}) {
			t.Fatalf("events %v", ev)
		}
	})

	t.Run("ConfirmLaterWithATestToken", func(t *testing.T) {
		cu := b.newCustomer(t)
		si, err := newSI(t, cu.ID, "", false)
		if err != nil {
			t.Fatal(err)
		}
		got, err := b.sc.SetupIntents.Confirm(si.ID, &stripe.SetupIntentConfirmParams{PaymentMethod: stripe.String("pm_card_mastercard")})
		if err != nil || got.Status != "succeeded" || got.PaymentMethod == nil {
			t.Fatalf("confirm: %v %v", got, err)
		}
		shaped(t, "setup_intent", got.LastResponse.RawJSON)
		t.Run("ConfirmOfASucceededSetUpIsRefused", func(t *testing.T) {
			_, err := b.sc.SetupIntents.Confirm(si.ID, nil)
			wantErr(t, err, 400, "setup_intent_unexpected_state", "")
		})
		t.Run("CancelOfASucceededSetUpIsRefused", func(t *testing.T) {
			_, err := b.sc.SetupIntents.Cancel(si.ID, nil)
			wantErr(t, err, 400, "setup_intent_unexpected_state", "")
		})
	})

	t.Run("ConfirmWithoutAPaymentMethodIsRefused", func(t *testing.T) {
		cu := b.newCustomer(t)
		si, _ := newSI(t, cu.ID, "", false)
		_, err := b.sc.SetupIntents.Confirm(si.ID, nil)
		wantErr(t, err, 400, "", "payment_method")
	})

	t.Run("CardOfAnotherCustomerIsRefused", func(t *testing.T) {
		cu, other := b.newCustomer(t), b.newCustomer(t)
		pm, err := b.sc.PaymentMethods.Attach("pm_card_visa", &stripe.PaymentMethodAttachParams{Customer: stripe.String(other.ID)})
		if err != nil {
			t.Fatal(err)
		}
		n := b.mark(t)
		_, err = newSI(t, cu.ID, pm.ID, true)
		wantErr(t, err, 400, "", "payment_method")
		if ev := b.since(t, n); len(ev) != 0 {
			t.Fatalf("a refused create emitted %v", ev)
		}
	})

	t.Run("CancelEmitsCanceled", func(t *testing.T) {
		cu := b.newCustomer(t)
		si, _ := newSI(t, cu.ID, "", false)
		n := b.mark(t)
		got, err := b.sc.SetupIntents.Cancel(si.ID, &stripe.SetupIntentCancelParams{CancellationReason: stripe.String("abandoned")})
		if err != nil || got.Status != "canceled" || got.CancellationReason != "abandoned" {
			t.Fatalf("cancel: %v %v", got, err)
		}
		shaped(t, "setup_intent", got.LastResponse.RawJSON)
		if ev := b.since(t, n); !slices.Equal(ev, []string{"setup_intent.canceled"}) {
			t.Fatalf("events %v", ev)
		}
	})

	t.Run("CreateIsIdempotent", func(t *testing.T) {
		cu := b.newCustomer(t)
		n := b.mark(t)
		p := func() *stripe.SetupIntentParams {
			p := &stripe.SetupIntentParams{Customer: stripe.String(cu.ID)}
			p.SetIdempotencyKey("seti-key")
			return p
		}
		a, err := b.sc.SetupIntents.New(p())
		if err != nil {
			t.Fatal(err)
		}
		again, err := b.sc.SetupIntents.New(p())
		if err != nil || again.ID != a.ID || again.ClientSecret != a.ClientSecret {
			t.Fatalf("replay: %v %v", again, err)
		}
		if ev := b.since(t, n); !slices.Equal(ev, []string{"setup_intent.created"}) {
			t.Fatalf("events %v", ev)
		}
	})

	t.Run("UnknownIsA404", func(t *testing.T) {
		_, err := b.sc.SetupIntents.Get("seti_nope", nil)
		wantErr(t, err, 404, "resource_missing", "")
		_, err = newSI(t, "cus_nope", "", false)
		wantErr(t, err, 404, "resource_missing", "customer")
	})
}

func TestThreeDSecurePage(t *testing.T) {
	b := newBox(t)
	cu := b.newCustomer(t)
	pi, err := b.sc.PaymentIntents.New(&stripe.PaymentIntentParams{Amount: stripe.Int64(2050), Currency: stripe.String("eur"),
		Customer: stripe.String(cu.ID), PaymentMethod: stripe.String("pm_card_authenticationRequired"), Confirm: stripe.Bool(true),
		PaymentMethodTypes: stripe.StringSlice([]string{"card"})})
	if err != nil || pi.Status != "requires_action" {
		t.Fatalf("payment: %v %v", pi, err)
	}
	if pi.NextAction == nil || pi.NextAction.RedirectToURL == nil || pi.NextAction.RedirectToURL.URL != b.URL+"/3ds/"+pi.ID {
		t.Fatalf("next_action %+v", pi.NextAction)
	}
	t.Run("PageNamesTheAmountAndOffersBothOutcomes", func(t *testing.T) {
		resp, err := http.Get(pi.NextAction.RedirectToURL.URL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		page := string(body)
		for _, want := range []string{"EUR 20.50", "Complete authentication", "Fail authentication", `name="result" value="pass"`, `value="fail"`} {
			if !strings.Contains(page, want) {
				t.Errorf("page lacks %q", want)
			}
		}
		for _, external := range []string{"<script src", "<link", "<img", "http://", "https://"} {
			if strings.Contains(page, external) {
				t.Errorf("page loads an external asset (%q)", external)
			}
		}
	})
	t.Run("AnythingButPassOrFailIsRefused", func(t *testing.T) {
		if resp := b.authenticate(t, pi.ID, "maybe"); resp.StatusCode != 400 {
			t.Fatalf("answered %d", resp.StatusCode)
		}
	})
	t.Run("UnknownIntentIs404", func(t *testing.T) {
		resp, err := http.Get(b.URL + "/3ds/pi_nope")
		if err != nil || resp.StatusCode != 404 {
			t.Fatalf("answered %v %v", resp.StatusCode, err)
		}
	})
	t.Run("PassWithoutReturnURLShowsTheResult", func(t *testing.T) {
		n := b.mark(t)
		resp, err := http.PostForm(b.URL+"/3ds/"+pi.ID, url.Values{"result": {"pass"}})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), "payment succeeded") {
			t.Fatalf("answered %d: %s", resp.StatusCode, body)
		}
		got, _ := b.sc.PaymentIntents.Get(pi.ID, nil)
		if got.Status != "succeeded" || got.LatestCharge == nil {
			t.Fatalf("after 3DS: %s", got.Status)
		}
		if ev := b.since(t, n); !slices.Equal(ev, []string{"charge.succeeded", "payment_intent.succeeded"}) {
			t.Fatalf("events %v", ev)
		}
	})
	t.Run("AnsweringTwiceIsRefused", func(t *testing.T) {
		if resp := b.authenticate(t, pi.ID, "pass"); resp.StatusCode != 400 {
			t.Fatalf("answered %d", resp.StatusCode)
		}
	})

	outcomes := []struct {
		name, result, redirectStatus string
		status                       stripe.PaymentIntentStatus
		events                       []string
	}{
		{"PassRedirectsToTheReturnURLPaid", "pass", "succeeded", "succeeded", []string{"charge.succeeded", "payment_intent.succeeded"}},
		{"FailRedirectsToTheReturnURLUnpaid", "fail", "failed", "requires_payment_method", []string{"charge.failed", "payment_intent.payment_failed"}},
	}
	for _, tc := range outcomes {
		t.Run(tc.name, func(t *testing.T) {
			pi, err := b.sc.PaymentIntents.New(&stripe.PaymentIntentParams{Amount: stripe.Int64(990), Currency: stripe.String("usd"),
				Customer: stripe.String(cu.ID), PaymentMethod: stripe.String("pm_card_threeDSecure2Required"), Confirm: stripe.Bool(true),
				ReturnURL: stripe.String("https://app.example/payment/complete?from=test")})
			if err != nil || pi.Status != "requires_action" {
				t.Fatalf("payment: %v %v", pi, err)
			}
			n := b.mark(t)
			resp := b.authenticate(t, pi.ID, tc.result)
			loc, _ := url.Parse(resp.Header.Get("Location"))
			if resp.StatusCode != http.StatusSeeOther || loc.Host != "app.example" || loc.Path != "/payment/complete" ||
				loc.Query().Get("from") != "test" || loc.Query().Get("payment_intent") != pi.ID ||
				loc.Query().Get("payment_intent_client_secret") != pi.ClientSecret || loc.Query().Get("redirect_status") != tc.redirectStatus {
				t.Fatalf("answered %d to %s", resp.StatusCode, loc)
			}
			got, _ := b.sc.PaymentIntents.Get(pi.ID, nil)
			if got.Status != tc.status || got.NextAction != nil {
				t.Fatalf("after 3DS: %s %+v", got.Status, got.NextAction)
			}
			shaped(t, "payment_intent", got.LastResponse.RawJSON)
			if tc.result == "fail" && (got.LastPaymentError == nil || got.LastPaymentError.Code != "payment_intent_authentication_failure") {
				t.Fatalf("last_payment_error %+v", got.LastPaymentError)
			}
			if ev := b.since(t, n); !slices.Equal(ev, tc.events) {
				t.Fatalf("events %v, want %v", ev, tc.events)
			}
		})
	}
}

func TestPaymentIntents(t *testing.T) {
	b := newBox(t)
	cu := b.newCustomer(t)
	pay := func(pm string, offSession bool, mod ...func(*stripe.PaymentIntentParams)) (*stripe.PaymentIntent, error) {
		p := &stripe.PaymentIntentParams{Amount: stripe.Int64(2000), Currency: stripe.String("usd"), Customer: stripe.String(cu.ID),
			PaymentMethod: stripe.String(pm), Confirm: stripe.Bool(true), ReturnURL: stripe.String("https://app.example/payment/complete"),
			Metadata: map[string]string{"workspace_id": "w1"}}
		if offSession {
			p.OffSession = stripe.Bool(true)
		}
		for _, m := range mod {
			m(p)
		}
		return b.sc.PaymentIntents.New(p)
	}

	cases := []struct {
		name, card  string
		offSession  bool
		status      stripe.PaymentIntentStatus
		code        stripe.ErrorCode // of the 402, "" for none
		declineCode stripe.DeclineCode
		events      []string
	}{
		{"GoodCardSucceeds", "pm_card_visa", false, "succeeded", "", "",
			[]string{"payment_intent.created", "charge.succeeded", "payment_intent.succeeded"}},
		{"DeclinedCardIsA402WithTheIntent", "pm_card_chargeDeclined", false, "requires_payment_method", "card_declined", "generic_decline",
			[]string{"payment_intent.created", "charge.failed", "payment_intent.payment_failed"}},
		{"InsufficientFundsIsA402", "pm_card_chargeDeclinedInsufficientFunds", false, "requires_payment_method", "card_declined", "insufficient_funds",
			[]string{"payment_intent.created", "charge.failed", "payment_intent.payment_failed"}},
		{"ExpiredCardIsA402", "pm_card_chargeDeclinedExpiredCard", false, "requires_payment_method", "expired_card", "expired_card",
			[]string{"payment_intent.created", "charge.failed", "payment_intent.payment_failed"}},
		{"CardThatFailsLaterIsDeclined", "pm_card_chargeCustomerFail", false, "requires_payment_method", "card_declined", "generic_decline",
			[]string{"payment_intent.created", "charge.failed", "payment_intent.payment_failed"}},
		{"ThreeDSecureCardRequiresAction", "pm_card_authenticationRequired", false, "requires_action", "", "",
			[]string{"payment_intent.created", "payment_intent.requires_action"}},
		{"ThreeDSecureCardOffSessionFails", "pm_card_authenticationRequired", true, "requires_payment_method", "authentication_required", "authentication_required",
			[]string{"payment_intent.created", "charge.failed", "payment_intent.payment_failed"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := b.mark(t)
			pi, err := pay(tc.card, tc.offSession)
			if tc.code != "" {
				se := wantErr(t, err, 402, tc.code, "")
				if se.Type != stripe.ErrorTypeCard || se.DeclineCode != tc.declineCode {
					t.Fatalf("error type %s decline_code %s", se.Type, se.DeclineCode)
				}
				if se.PaymentIntent == nil || se.PaymentIntent.ID == "" {
					t.Fatal("the 402 does not carry the PaymentIntent")
				}
				pi = se.PaymentIntent
				if pi.LastPaymentError == nil || pi.LastPaymentError.Code != tc.code || pi.LastPaymentError.DeclineCode != tc.declineCode {
					t.Fatalf("last_payment_error %+v", pi.LastPaymentError)
				}
			} else if err != nil {
				t.Fatal(err)
			} else {
				shaped(t, "payment_intent", pi.LastResponse.RawJSON)
			}
			if pi.Status != tc.status {
				t.Fatalf("answered status %s, want %s", pi.Status, tc.status)
			}
			got, err := b.sc.PaymentIntents.Get(pi.ID, nil)
			if err != nil || got.Status != tc.status || got.Metadata["workspace_id"] != "w1" {
				t.Fatalf("stored %v (%v)", got, err)
			}
			shaped(t, "payment_intent", got.LastResponse.RawJSON)
			if tc.status == "requires_action" {
				na := got.NextAction
				if na == nil || na.Type != "redirect_to_url" || na.RedirectToURL.URL != b.URL+"/3ds/"+pi.ID ||
					na.RedirectToURL.ReturnURL != "https://app.example/payment/complete" {
					t.Fatalf("next_action %+v", na)
				}
			}
			if tc.status == "succeeded" || tc.code != "" {
				ch, err := b.sc.Charges.Get(got.LatestCharge.ID, nil)
				if err != nil {
					t.Fatal(err)
				}
				shaped(t, "charge", ch.LastResponse.RawJSON)
				if ch.PaymentIntent.ID != pi.ID || ch.Paid != (tc.status == "succeeded") || ch.Amount != 2000 || ch.Metadata["workspace_id"] != "w1" {
					t.Fatalf("charge %+v", ch)
				}
			}
			if ev := b.since(t, n); !slices.Equal(ev, tc.events) {
				t.Fatalf("events %v, want %v", ev, tc.events)
			}
		})
	}

	t.Run("TheDeclineBodyIsStripesShape", func(t *testing.T) {
		status, body := b.raw(t, "POST", "/v1/payment_intents", url.Values{"amount": {"2000"}, "currency": {"usd"},
			"customer": {cu.ID}, "payment_method": {"pm_card_chargeDeclined"}, "confirm": {"true"}, "payment_method_types[]": {"card"}})
		e, _ := body["error"].(map[string]any)
		if status != 402 || e["type"] != "card_error" || e["code"] != "card_declined" || e["decline_code"] != "generic_decline" {
			t.Fatalf("%d %v", status, body)
		}
		shaped(t, "payment_intent", e["payment_intent"])
	})

	t.Run("CreateThenUpdateThenConfirm", func(t *testing.T) {
		pi, err := b.sc.PaymentIntents.New(&stripe.PaymentIntentParams{Amount: stripe.Int64(1500), Currency: stripe.String("usd"),
			Customer: stripe.String(cu.ID), AutomaticPaymentMethods: &stripe.PaymentIntentAutomaticPaymentMethodsParams{Enabled: stripe.Bool(true)}})
		if err != nil {
			t.Fatal(err)
		}
		shaped(t, "payment_intent", pi.LastResponse.RawJSON)
		if pi.Status != "requires_payment_method" || !strings.HasPrefix(pi.ClientSecret, pi.ID+"_secret_") {
			t.Fatalf("created %s %s", pi.Status, pi.ClientSecret)
		}
		up, err := b.sc.PaymentIntents.Update(pi.ID, &stripe.PaymentIntentParams{Amount: stripe.Int64(2500),
			PaymentMethod: stripe.String("pm_card_visa"), Metadata: map[string]string{"order": "o1"}})
		if err != nil || up.Amount != 2500 || up.Status != "requires_confirmation" || up.Metadata["order"] != "o1" {
			t.Fatalf("update: %v %v", up, err)
		}
		shaped(t, "payment_intent", up.LastResponse.RawJSON)
		t.Run("ConfirmWithoutReturnURLIsRefusedUnderAutomaticPaymentMethods", func(t *testing.T) {
			_, err := b.sc.PaymentIntents.Confirm(pi.ID, nil)
			wantErr(t, err, 400, "", "return_url")
		})
		done, err := b.sc.PaymentIntents.Confirm(pi.ID, &stripe.PaymentIntentConfirmParams{ReturnURL: stripe.String("https://app.example/r")})
		if err != nil || done.Status != "succeeded" || done.AmountReceived != 2500 {
			t.Fatalf("confirm: %v %v", done, err)
		}
		shaped(t, "payment_intent", done.LastResponse.RawJSON)
		t.Run("ConfirmOfASucceededIntentIsRefused", func(t *testing.T) {
			_, err := b.sc.PaymentIntents.Confirm(pi.ID, &stripe.PaymentIntentConfirmParams{ReturnURL: stripe.String("https://app.example/r")})
			wantErr(t, err, 400, stripe.ErrorCodePaymentIntentUnexpectedState, "")
		})
		t.Run("UpdateOfASucceededIntentIsRefused", func(t *testing.T) {
			_, err := b.sc.PaymentIntents.Update(pi.ID, &stripe.PaymentIntentParams{Amount: stripe.Int64(100)})
			wantErr(t, err, 400, stripe.ErrorCodePaymentIntentUnexpectedState, "")
		})
		t.Run("CancelOfASucceededIntentIsRefused", func(t *testing.T) {
			_, err := b.sc.PaymentIntents.Cancel(pi.ID, nil)
			wantErr(t, err, 400, stripe.ErrorCodePaymentIntentUnexpectedState, "")
		})
	})

	t.Run("RetryAfterADeclineWithAnotherCardSucceeds", func(t *testing.T) {
		_, err := pay("pm_card_chargeDeclined", false)
		pi := stripeErr(t, err).PaymentIntent
		done, err := b.sc.PaymentIntents.Confirm(pi.ID, &stripe.PaymentIntentConfirmParams{PaymentMethod: stripe.String("pm_card_visa")})
		if err != nil || done.Status != "succeeded" || done.LastPaymentError != nil {
			t.Fatalf("retry: %v %v", done, err)
		}
	})

	t.Run("CancelEmitsCanceled", func(t *testing.T) {
		pi, err := b.sc.PaymentIntents.New(&stripe.PaymentIntentParams{Amount: stripe.Int64(1500), Currency: stripe.String("usd"), Customer: stripe.String(cu.ID)})
		if err != nil {
			t.Fatal(err)
		}
		n := b.mark(t)
		got, err := b.sc.PaymentIntents.Cancel(pi.ID, &stripe.PaymentIntentCancelParams{CancellationReason: stripe.String("abandoned")})
		if err != nil || got.Status != "canceled" || got.CanceledAt == 0 || got.CancellationReason != "abandoned" {
			t.Fatalf("cancel: %v %v", got, err)
		}
		shaped(t, "payment_intent", got.LastResponse.RawJSON)
		if ev := b.since(t, n); !slices.Equal(ev, []string{"payment_intent.canceled"}) {
			t.Fatalf("events %v", ev)
		}
		_, err = b.sc.PaymentIntents.Confirm(pi.ID, &stripe.PaymentIntentConfirmParams{PaymentMethod: stripe.String("pm_card_visa")})
		wantErr(t, err, 400, stripe.ErrorCodePaymentIntentUnexpectedState, "")
	})

	t.Run("SetupFutureUsageSavesTheCard", func(t *testing.T) {
		c2 := b.newCustomer(t)
		n := b.mark(t)
		pi, err := b.sc.PaymentIntents.New(&stripe.PaymentIntentParams{Amount: stripe.Int64(1500), Currency: stripe.String("usd"),
			Customer: stripe.String(c2.ID), PaymentMethod: stripe.String("pm_card_visa"), Confirm: stripe.Bool(true),
			SetupFutureUsage: stripe.String("off_session"), PaymentMethodTypes: stripe.StringSlice([]string{"card"})})
		if err != nil || pi.Status != "succeeded" {
			t.Fatalf("pay: %v %v", pi, err)
		}
		pm, _ := b.sc.PaymentMethods.Get(pi.PaymentMethod.ID, nil)
		if pm.Customer == nil || pm.Customer.ID != c2.ID {
			t.Fatal("the card was not saved on the customer")
		}
		want := []string{"payment_intent.created", "charge.succeeded", "payment_method.attached", "payment_intent.succeeded"}
		if ev := b.since(t, n); !slices.Equal(ev, want) {
			t.Fatalf("events %v", ev)
		}
	})

	t.Run("CreateIsIdempotent", func(t *testing.T) {
		n := b.mark(t)
		p := func() *stripe.PaymentIntentParams {
			p := &stripe.PaymentIntentParams{Amount: stripe.Int64(700), Currency: stripe.String("usd"), Customer: stripe.String(cu.ID),
				PaymentMethod: stripe.String("pm_card_visa"), Confirm: stripe.Bool(true), ReturnURL: stripe.String("https://app.example/r")}
			p.SetIdempotencyKey("pi-key")
			return p
		}
		a, err := b.sc.PaymentIntents.New(p())
		if err != nil {
			t.Fatal(err)
		}
		again, err := b.sc.PaymentIntents.New(p())
		if err != nil || again.ID != a.ID || again.Status != "succeeded" {
			t.Fatalf("replay: %v %v", again, err)
		}
		if ev := b.since(t, n); !slices.Equal(ev, []string{"payment_intent.created", "charge.succeeded", "payment_intent.succeeded"}) {
			t.Fatalf("events %v (a replay must not pay twice)", ev)
		}
	})

	t.Run("ListByCustomerAndCharges", func(t *testing.T) {
		c3 := b.newCustomer(t)
		var want []string
		for range 2 {
			pi, err := b.sc.PaymentIntents.New(&stripe.PaymentIntentParams{Amount: stripe.Int64(900), Currency: stripe.String("usd"),
				Customer: stripe.String(c3.ID), PaymentMethod: stripe.String("pm_card_visa"), Confirm: stripe.Bool(true),
				PaymentMethodTypes: stripe.StringSlice([]string{"card"})})
			if err != nil {
				t.Fatal(err)
			}
			want = append([]string{pi.ID}, want...)
		}
		var got []string
		it := b.sc.PaymentIntents.List(&stripe.PaymentIntentListParams{Customer: stripe.String(c3.ID)})
		for it.Next() {
			got = append(got, it.PaymentIntent().ID)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("list %v, want %v", got, want)
		}
		var charges []*stripe.Charge
		cit := b.sc.Charges.List(&stripe.ChargeListParams{PaymentIntent: stripe.String(want[0])})
		for cit.Next() {
			charges = append(charges, cit.Charge())
		}
		if len(charges) != 1 || charges[0].PaymentIntent.ID != want[0] || charges[0].Status != "succeeded" {
			t.Fatalf("charges of %s: %v", want[0], charges)
		}
	})

	bad := []struct {
		name   string
		params *stripe.PaymentIntentParams
		status int
		code   stripe.ErrorCode
		param  string
		says   string
	}{
		{"AmountBelowTheMinimum", &stripe.PaymentIntentParams{Amount: stripe.Int64(10), Currency: stripe.String("usd")}, 400, "amount_too_small", "amount", ""},
		{"AmountAboveTheMaximum", &stripe.PaymentIntentParams{Amount: stripe.Int64(100000000), Currency: stripe.String("usd")}, 400, "amount_too_large", "amount", ""},
		{"UnknownCustomer", &stripe.PaymentIntentParams{Amount: stripe.Int64(1000), Currency: stripe.String("usd"), Customer: stripe.String("cus_nope")}, 404, "resource_missing", "customer", ""},
		{"UnknownPaymentMethod", &stripe.PaymentIntentParams{Amount: stripe.Int64(1000), Currency: stripe.String("usd"), PaymentMethod: stripe.String("pm_nope")}, 404, "resource_missing", "payment_method", ""},
		{"ConfirmWithoutAPaymentMethod", &stripe.PaymentIntentParams{Amount: stripe.Int64(1000), Currency: stripe.String("usd"), Confirm: stripe.Bool(true)}, 400, "", "payment_method", ""},
		{"OffSessionWithoutConfirm", &stripe.PaymentIntentParams{Amount: stripe.Int64(1000), Currency: stripe.String("usd"), OffSession: stripe.Bool(true)}, 400, "", "off_session", ""},
		{"ReturnURLWithoutConfirm", &stripe.PaymentIntentParams{Amount: stripe.Int64(1000), Currency: stripe.String("usd"), ReturnURL: stripe.String("https://app.example/r")}, 400, "", "return_url", ""},
		{"ManualCaptureIsRefusedByName", &stripe.PaymentIntentParams{Amount: stripe.Int64(1000), Currency: stripe.String("usd"), CaptureMethod: stripe.String("manual")}, 501, "", "", "capture_method"},
		{"TransferDataIsRefusedByName", &stripe.PaymentIntentParams{Amount: stripe.Int64(1000), Currency: stripe.String("usd"),
			TransferData: &stripe.PaymentIntentTransferDataParams{Destination: stripe.String("acct_1")}}, 501, "", "", "transfer_data"},
		{"OtherPaymentMethodTypesAreRefusedByName", &stripe.PaymentIntentParams{Amount: stripe.Int64(1000), Currency: stripe.String("usd"),
			PaymentMethodTypes: stripe.StringSlice([]string{"sepa_debit"})}, 501, "", "", "sepa_debit"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.sc.PaymentIntents.New(tc.params)
			se := wantErr(t, err, tc.status, tc.code, tc.param)
			if !strings.Contains(se.Msg, tc.says) {
				t.Fatalf("message %q does not name %q", se.Msg, tc.says)
			}
		})
	}

	t.Run("CardOfAnotherCustomerIsRefused", func(t *testing.T) {
		other := b.newCustomer(t)
		pm, err := b.sc.PaymentMethods.Attach("pm_card_visa", &stripe.PaymentMethodAttachParams{Customer: stripe.String(other.ID)})
		if err != nil {
			t.Fatal(err)
		}
		_, err = pay(pm.ID, false)
		wantErr(t, err, 400, "", "payment_method")
	})

	t.Run("UnknownIntentAndChargeAre404", func(t *testing.T) {
		_, err := b.sc.PaymentIntents.Get("pi_nope", nil)
		wantErr(t, err, 404, "resource_missing", "")
		_, err = b.sc.PaymentIntents.Confirm("pi_nope", nil)
		wantErr(t, err, 404, "resource_missing", "")
		_, err = b.sc.Charges.Get("ch_nope", nil)
		wantErr(t, err, 404, "resource_missing", "")
	})
}
