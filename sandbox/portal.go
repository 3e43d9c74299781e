package sandbox

import (
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// The billing portal: POST /v1/billing_portal/sessions answers a short-lived
// URL (PublicURL/portal/{id}) where the customer sees their subscriptions,
// default card and invoices, replaces the card, and cancels at the period's
// end or takes that back.
//
// Stripe's sessions are short-lived: an unvisited URL stops working a few
// minutes after creation (portalVisitWindow), and a visited one lasts for
// the customer's visit (portalVisitLength). Both are wall-clock time, as
// a person's visit is: advancing the sandbox's clock a month does not end
// a session opened a minute ago (nor does Stripe's test clock).

const (
	portalVisitWindow = 5 * 60
	portalVisitLength = 60 * 60
	// portalConfiguration is the account's default portal configuration;
	// the sandbox has only this one.
	portalConfiguration = "bpc_sandbox_default"
)

func (s *Server) routesPortal() {
	s.handle("POST /v1/billing_portal/sessions", func(c *call) (any, error) {
		if err := refuseUnimplemented(c.params, map[string][]string{"customer": nil, "return_url": nil, "locale": nil, "expand": nil},
			"billing portal session"); err != nil {
			return nil, err
		}
		customer := c.str("customer")
		if customer == "" {
			return nil, badRequest("customer", "Missing required param: customer.")
		}
		if _, err := s.must("customer", customer, "customer"); err != nil {
			return nil, err
		}
		ret := c.str("return_url")
		if ret != "" && !strings.HasPrefix(ret, "http://") && !strings.HasPrefix(ret, "https://") {
			return nil, badRequest("return_url", "Not a valid URL")
		}
		id := "bps_" + randomID(24)
		ps := s.spec.blank("billing_portal.session")
		for k, v := range (object{
			"id": id, "configuration": portalConfiguration, "created": s.nowOn(""),
			"customer": customer, "flow": nil, "livemode": false, "locale": nilIfEmpty(c.str("locale")),
			"on_behalf_of": nil, "return_url": nilIfEmpty(ret), "url": s.opts.PublicURL + "/portal/" + id,
		}) {
			ps[k] = v
		}
		s.put(ps)
		s.internal(id)["created_wall"] = s.opts.Now().Unix()
		return ps, nil
	})
	s.page("GET /portal/{id}", s.portalPage)
	s.page("POST /portal/{id}", s.portalSubmit)
}

// portalOpen reports whether a portal session may still be used, marking
// its first visit; the message says why not.
func (s *Server) portalOpen(ps object) (bool, string) {
	now := s.opts.Now().Unix()
	in := s.internal(str(ps["id"]))
	until := num(in["visit_until"])
	switch {
	case until == 0 && now > num(in["created_wall"])+portalVisitWindow:
		return false, "This portal session has expired: its link is valid for 5 minutes. Return to the merchant and open the billing portal again."
	case until == 0:
		in["visit_until"] = now + portalVisitLength
		s.dirty = true
	case now > until:
		return false, "This portal session has ended. Return to the merchant and open the billing portal again."
	}
	return true, ""
}

type portalSubView struct {
	ID, Plan, Status, PeriodEnd string
	CancelAtPeriodEnd, Live     bool
}

type portalInvoiceView struct{ Number, Date, Amount, Status string }

type portalView struct {
	Title, ID, Email, Card, ReturnURL, Message, Notice, Expired string
	Subs                                                        []portalSubView
	Invoices                                                    []portalInvoiceView
	Cards                                                       []struct{ Number, Does string }
}

func (s *Server) portalView(ps object, msg, notice string) portalView {
	cu := s.get("customer", idOf(ps["customer"]))
	v := portalView{Title: "Billing", ID: str(ps["id"]), Email: str(cu["email"]), Card: "none",
		ReturnURL: str(ps["return_url"]), Message: msg, Notice: notice, Cards: TestCards}
	if pm := s.get("payment_method", idOf(cu["invoice_settings"].(map[string]any)["default_payment_method"])); pm != nil {
		card, _ := pm["card"].(map[string]any)
		v.Card = str(card["brand"]) + " •••• " + str(card["last4"])
	}
	for _, sub := range s.customerSubscriptions(str(cu["id"])) {
		var plans []string
		if items, _ := sub["items"].(map[string]any); items != nil {
			for _, x := range asList(items["data"]) {
				it, _ := x.(map[string]any)
				price, _ := it["price"].(map[string]any)
				if price == nil {
					price = s.get("price", idOf(it["price"]))
				}
				if price == nil {
					continue
				}
				name := str(price["nickname"])
				if p := s.get("product", idOf(price["product"])); p != nil && name == "" {
					name = str(p["name"])
				}
				line := name + " — " + formatAmount(num(price["unit_amount"])*max(1, num(it["quantity"])), str(price["currency"]))
				if iv := intervalLabel(price); iv != "" {
					line += " per " + iv
				}
				if q := num(it["quantity"]); q > 1 {
					line += " (" + itoa(q) + " seats)"
				}
				plans = append(plans, line)
			}
		}
		status := str(sub["status"])
		v.Subs = append(v.Subs, portalSubView{ID: str(sub["id"]), Plan: strings.Join(plans, "; "), Status: status,
			PeriodEnd: formatDate(num(sub["current_period_end"])), CancelAtPeriodEnd: sub["cancel_at_period_end"] == true,
			Live: portalManaged(sub)})
	}
	for _, inv := range s.all("invoice", func(o object) bool { return idOf(o["customer"]) == str(cu["id"]) && o["status"] != "draft" }) {
		v.Invoices = append(v.Invoices, portalInvoiceView{Number: orDefault(str(inv["number"]), str(inv["id"])),
			Date: formatDate(num(inv["created"])), Amount: formatAmount(num(inv["total"]), str(inv["currency"])), Status: str(inv["status"])})
	}
	return v
}

func (s *Server) customerSubscriptions(customer string) []object {
	return s.all("subscription", func(o object) bool { return idOf(o["customer"]) == customer })
}

var portalTmpl = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("portal").Parse(pageHead + `
<h1>{{.Title}}</h1>
{{if .Expired}}<p class="err" role="alert">{{.Expired}}</p>{{else}}
{{if .Message}}<p class="err" role="alert">{{.Message}}</p>{{end}}
{{if .Notice}}<p class="ok" role="status">{{.Notice}}</p>{{end}}
<p>{{.Email}}</p>
<h2>Subscriptions</h2>
{{range .Subs}}<div class="sub" id="{{.ID}}"><p><strong>{{.Plan}}</strong><br>Status: {{.Status}}<br>
{{if .CancelAtPeriodEnd}}Cancels on {{.PeriodEnd}}{{else if .Live}}Renews on {{.PeriodEnd}}{{end}}</p>
{{if .Live}}<form method="post" action="/portal/{{$.ID}}"><input type="hidden" name="subscription" value="{{.ID}}">
{{if .CancelAtPeriodEnd}}<button type="submit" name="action" value="renew">Don't cancel</button>
{{else}}<button type="submit" name="action" value="cancel">Cancel at the end of the period</button>{{end}}</form>{{end}}</div>
{{else}}<p>No subscriptions.</p>{{end}}
<h2>Payment method</h2>
<p>Default card: <span id="card">{{.Card}}</span></p>
<form method="post" action="/portal/{{.ID}}">
<p><label>New card number<br><input type="text" name="card_number" inputmode="numeric" placeholder="4242 4242 4242 4242"></label></p>
<button type="submit" name="action" value="update_card">Update card</button></form>
<p class="note">Test cards: {{range .Cards}}<code>{{.Number}}</code> {{.Does}}; {{end}}</p>
<h2>Invoices</h2>
<table>{{range .Invoices}}<tr><td>{{.Number}}</td><td>{{.Date}}</td><td class="n">{{.Amount}}</td><td>{{.Status}}</td></tr>{{else}}<tr><td>No invoices.</td></tr>{{end}}</table>
{{end}}
{{if .ReturnURL}}<p><a id="return" href="{{.ReturnURL}}">← Return</a></p>{{end}}
</body></html>`))
})

func (s *Server) portalPage(w http.ResponseWriter, r *http.Request) {
	var v portalView
	found, ok := false, false
	err := s.locked(func(c *call) error {
		ps := s.get("billing_portal.session", r.PathValue("id"))
		if ps == nil {
			return nil
		}
		found = true
		var why string
		ok, why = s.portalOpen(ps)
		if !ok {
			v = portalView{Title: "Billing", ReturnURL: str(ps["return_url"]), Expired: why}
			return nil
		}
		notice := map[string]string{"card": "Your card was updated.", "cancel": "Your subscription will be canceled at the end of the period.",
			"renew": "Your subscription will renew."}[r.URL.Query().Get("done")]
		v = s.portalView(ps, "", notice)
		return nil
	})
	switch {
	case err != nil:
		http.Error(w, "The sandbox failed: "+err.Error(), http.StatusInternalServerError)
	case !found:
		http.Error(w, "The Stripe sandbox has no billing portal session "+r.PathValue("id")+".", http.StatusNotFound)
	case !ok:
		renderPage(w, portalTmpl(), http.StatusGone, v)
	default:
		renderPage(w, portalTmpl(), http.StatusOK, v)
	}
}

// portalSubmit serves the portal's forms: action=update_card with
// card_number; action=cancel or renew with subscription.
func (s *Server) portalSubmit(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "Bad form: "+err.Error(), http.StatusBadRequest)
		return
	}
	var v portalView
	found, status, done := false, http.StatusOK, ""
	err := s.locked(func(c *call) error {
		ps := s.get("billing_portal.session", r.PathValue("id"))
		if ps == nil {
			return nil
		}
		found = true
		if ok, why := s.portalOpen(ps); !ok {
			v, status = portalView{Title: "Billing", ReturnURL: str(ps["return_url"]), Expired: why}, http.StatusGone
			return nil
		}
		var msg string
		status, msg, done = s.portalAction(c, ps, r.PostForm)
		if done == "" {
			v = s.portalView(ps, msg, "")
		}
		return nil
	})
	switch {
	case err != nil:
		http.Error(w, "The sandbox failed: "+err.Error(), http.StatusInternalServerError)
	case !found:
		http.Error(w, "The Stripe sandbox has no billing portal session "+r.PathValue("id")+".", http.StatusNotFound)
	case done != "":
		http.Redirect(w, r, "/portal/"+url.PathEscape(r.PathValue("id"))+"?done="+done, http.StatusSeeOther)
	default:
		renderPage(w, portalTmpl(), status, v)
	}
}

// portalAction applies one portal form under the lock: the status and
// message to show again, or what was done.
func (s *Server) portalAction(c *call, ps object, form url.Values) (int, string, string) {
	cu := s.get("customer", idOf(ps["customer"]))
	switch form.Get("action") {
	case "update_card":
		card, ok := cardForNumber(form.Get("card_number"))
		if !ok {
			return http.StatusBadRequest, "The sandbox does not know the card number " + form.Get("card_number") + ": use one of the test cards listed below.", ""
		}
		pm := s.newCardPaymentMethod(card, idOf(cu["test_clock"]))
		if _, err := s.attachPaymentMethod(c, str(pm["id"]), str(cu["id"])); err != nil {
			return err.Status, err.Message, ""
		}
		prev := map[string]any{"invoice_settings": clone(cu["invoice_settings"].(map[string]any))}
		if err := s.setDefaultPaymentMethod(c, cu, str(pm["id"])); err != nil {
			return err.Status, err.Message, ""
		}
		s.emit(c, "customer.updated", cu, prev)
		for _, sub := range s.customerSubscriptions(str(cu["id"])) {
			if sub["status"] == "canceled" || sub["status"] == "incomplete_expired" {
				continue
			}
			prev := map[string]any{"default_payment_method": sub["default_payment_method"]}
			sub["default_payment_method"] = pm["id"]
			s.emit(c, "customer.subscription.updated", sub, prev)
		}
		return 0, "", "card"
	case "cancel", "renew":
		sub := s.get("subscription", form.Get("subscription"))
		if sub == nil || idOf(sub["customer"]) != str(cu["id"]) {
			return http.StatusNotFound, "No such subscription for this customer: " + form.Get("subscription") + ".", ""
		}
		if !portalManaged(sub) {
			return http.StatusConflict, "This subscription is " + str(sub["status"]) + ": it cannot be changed here.", ""
		}
		cancel := form.Get("action") == "cancel"
		if err := s.setCancelAtPeriodEnd(c, sub, cancel); err != nil {
			return err.Status, err.Message, ""
		}
		return 0, "", form.Get("action")
	}
	return http.StatusBadRequest, "Unknown action " + form.Get("action") + ": use update_card, cancel or renew.", ""
}

// portalManaged reports whether the portal lets the customer cancel or
// renew a subscription: the ones that bill, as Stripe's portal shows them.
func portalManaged(sub object) bool {
	switch sub["status"] {
	case "active", "trialing", "past_due", "unpaid":
		return true
	}
	return false
}
