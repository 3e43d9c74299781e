package sandbox

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
)

func (b *box) chkPortal(t *testing.T, customer string) *stripe.BillingPortalSession {
	t.Helper()
	ps, err := b.sc.BillingPortalSessions.New(&stripe.BillingPortalSessionParams{Customer: stripe.String(customer),
		ReturnURL: stripe.String("https://app.example.com/billing")})
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func TestBillingPortalSessionAPI(t *testing.T) {
	b := newBox(t)
	cu := b.chkCustomer(t)

	t.Run("CreateAnswersStripesShapeWithTheSandboxURL", func(t *testing.T) {
		ps := b.chkPortal(t, cu.ID)
		shaped(t, "billing_portal.session", ps.LastResponse.RawJSON)
		if ps.Object != "billing_portal.session" || ps.URL != b.URL+"/portal/"+ps.ID || ps.Customer != cu.ID ||
			ps.ReturnURL != "https://app.example.com/billing" || ps.Livemode || ps.Flow != nil || ps.Created == 0 ||
			strings.ContainsAny(ps.URL, "{}") {
			t.Fatalf("session %+v", ps)
		}
	})
	for _, tc := range []struct {
		name   string
		params *stripe.BillingPortalSessionParams
		status int
		param  string
	}{
		{"UnknownCustomer", &stripe.BillingPortalSessionParams{Customer: stripe.String("cus_nope")}, 404, "customer"},
		{"MissingCustomer", &stripe.BillingPortalSessionParams{ReturnURL: stripe.String("https://x.example")}, 400, ""},
		{"ConfigurationByName", &stripe.BillingPortalSessionParams{Customer: stripe.String(cu.ID), Configuration: stripe.String("bpc_1")}, 501, ""},
	} {
		t.Run("Refuses"+tc.name, func(t *testing.T) {
			_, err := b.sc.BillingPortalSessions.New(tc.params)
			se := checkoutErr(t, err)
			if se.HTTPStatusCode != tc.status || se.Param != tc.param {
				t.Fatalf("%d %q: %s", se.HTTPStatusCode, se.Param, se.Msg)
			}
			if tc.status == 501 && !strings.Contains(se.Msg, "configuration") {
				t.Fatalf("not refused by name: %s", se.Msg)
			}
		})
	}
}

func TestBillingPortalPage(t *testing.T) {
	b := newBox(t)
	cu := b.chkCustomer(t)

	t.Run("ShowsTheCustomerAndALinkBack", func(t *testing.T) {
		ps := b.chkPortal(t, cu.ID)
		code, _, body := chkGet(t, ps.URL)
		if code != 200 || !strings.Contains(body, "ada@example.com") || !strings.Contains(body, `href="https://app.example.com/billing"`) ||
			!strings.Contains(body, `id="card">none<`) || strings.Contains(body, "<script") {
			t.Fatalf("portal page %d\n%s", code, body)
		}
	})

	t.Run("UpdateCardMakesItTheDefault", func(t *testing.T) {
		b.delivered(t)
		before := len(b.recv.types())
		ps := b.chkPortal(t, cu.ID)
		code, loc, body := chkSubmit(t, ps.URL, url.Values{"action": {"update_card"}, "card_number": {"5555 5555 5555 4444"}})
		if code != http.StatusSeeOther || !strings.HasPrefix(loc, "/portal/"+ps.ID) {
			t.Fatalf("update card: %d %q\n%s", code, loc, body)
		}
		got, err := b.sc.Customers.Get(cu.ID, nil)
		if err != nil || got.InvoiceSettings.DefaultPaymentMethod == nil {
			t.Fatalf("customer %+v %v", got, err)
		}
		if _, _, body := chkGet(t, b.URL+loc); !strings.Contains(body, `id="card">mastercard •••• 4444<`) || !strings.Contains(body, "Your card was updated.") {
			t.Fatalf("page after the update:\n%s", body)
		}
		if evs := b.delivered(t)[before:]; !slices.Equal(evs, []string{"payment_method.attached", "customer.updated"}) {
			t.Fatalf("events %v", evs)
		}
	})

	t.Run("ADeclinedCardIsRefusedOnThePage", func(t *testing.T) {
		ps := b.chkPortal(t, cu.ID)
		code, _, body := chkSubmit(t, ps.URL, url.Values{"action": {"update_card"}, "card_number": {"4000000000000002"}})
		if code != http.StatusPaymentRequired || !strings.Contains(body, "Your card was declined.") {
			t.Fatalf("declined card: %d\n%s", code, body)
		}
		if _, _, body := chkGet(t, ps.URL); !strings.Contains(body, "4444<") {
			t.Fatalf("the default card changed after a decline")
		}
	})
}

// TestBillingPortalSessionsLastInWallClockTime: a session's link expires
// five minutes after creation unless visited, and a visit lasts an hour,
// both in real time; moving the sandbox's clock ends neither.
func TestBillingPortalSessionsLastInWallClockTime(t *testing.T) {
	var wall atomic.Int64
	wall.Store(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC).Unix())
	b := newBox(t, func(o *Options) { o.Now = func() time.Time { return time.Unix(wall.Load(), 0) } })
	cu := b.chkCustomer(t)
	ps := b.chkPortal(t, cu.ID)
	visited := b.chkPortal(t, cu.ID)
	if code, _, _ := chkGet(t, visited.URL); code != 200 {
		t.Fatal(code)
	}

	if _, err := b.Advance(32 * 24 * time.Hour); err != nil {
		t.Fatal(err)
	}
	if code, _, body := chkGet(t, ps.URL); code != 200 {
		t.Fatalf("a month of the sandbox's clock expired a session opened a moment ago: %d\n%s", code, body)
	}
	fresh := b.chkPortal(t, cu.ID)

	wall.Add(6 * 60)
	code, _, body := chkGet(t, fresh.URL)
	if code != http.StatusGone || !strings.Contains(body, "expired") || !strings.Contains(body, `href="https://app.example.com/billing"`) {
		t.Fatalf("an unvisited session six minutes on: %d\n%s", code, body)
	}
	if code, _, _ := chkSubmit(t, fresh.URL, url.Values{"action": {"update_card"}, "card_number": {"4242424242424242"}}); code != http.StatusGone {
		t.Fatalf("a form on an expired session answered %d", code)
	}
	if code, _, _ := chkGet(t, visited.URL); code != 200 {
		t.Fatalf("a visited session ended after 6 minutes: %d", code)
	}
	wall.Add(60 * 60)
	if code, _, _ := chkGet(t, visited.URL); code != http.StatusGone {
		t.Fatalf("a visited session still works an hour later: %d", code)
	}
}
