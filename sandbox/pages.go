package sandbox

import (
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"sync"
	"time"
)

// The hosted pages (Checkout, the billing portal) are plain HTML forms: no
// external assets, no JavaScript, and every form can be posted with curl
// or http.PostForm.

// zeroDecimal are the currencies whose amounts Stripe counts in whole
// units (https://docs.stripe.com/currencies#zero-decimal).
var zeroDecimal = map[string]bool{"bif": true, "clp": true, "djf": true, "gnf": true, "jpy": true, "kmf": true, "krw": true,
	"mga": true, "pyg": true, "rwf": true, "ugx": true, "vnd": true, "vuv": true, "xaf": true, "xof": true, "xpf": true}

var currencySymbols = map[string]string{"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "cad": "CA$", "aud": "A$", "chf": "CHF "}

// formatAmount renders an amount in the currency's smallest unit for
// people: 2900 usd is $29.00, 1000 jpy is ¥1,000.
func formatAmount(amount int64, currency string) string {
	currency = strings.ToLower(currency)
	neg := amount < 0
	if neg {
		amount = -amount
	}
	var whole, frac int64 = amount, -1
	if !zeroDecimal[currency] {
		whole, frac = amount/100, amount%100
	}
	digits := fmt.Sprint(whole)
	var b strings.Builder
	for i, r := range digits {
		if i > 0 && (len(digits)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	out := b.String()
	if frac >= 0 {
		out += fmt.Sprintf(".%02d", frac)
	}
	if sym, ok := currencySymbols[currency]; ok {
		out = sym + out
	} else {
		out = out + " " + strings.ToUpper(currency)
	}
	if neg {
		out = "-" + out
	}
	return out
}

// intervalLabel renders a recurring price's interval: "month", "3 months".
func intervalLabel(price object) string {
	rc, _ := price["recurring"].(map[string]any)
	if rc == nil {
		return ""
	}
	n := num(rc["interval_count"])
	if n <= 1 {
		return str(rc["interval"])
	}
	return fmt.Sprintf("%d %ss", n, str(rc["interval"]))
}

func formatDate(unix int64) string {
	if unix == 0 {
		return "—"
	}
	return time.Unix(unix, 0).UTC().Format("2 Jan 2006")
}

const pageHead = `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{{.Title}} — Stripe sandbox</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#1a1f36}
table{width:100%;border-collapse:collapse}td,th{padding:.3rem;text-align:left;border-bottom:1px solid #e3e8ee}
td.n,th.n{text-align:right}.err{background:#fde8e8;color:#8a1c1c;padding:.6rem;border-radius:4px}
.ok{background:#e6f6ea;color:#1c5b2c;padding:.6rem;border-radius:4px}.note{color:#697386;font-size:.9rem}
input[type=text],input[type=email]{width:100%;padding:.4rem;font-size:1rem;box-sizing:border-box}
button{padding:.5rem 1rem;font-size:1rem;margin:.3rem .3rem .3rem 0}form.inline{display:inline}</style></head><body>
<p class="note">Stripe sandbox: test mode, no real money moves.</p>`

var checkoutTmpl = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("checkout").Parse(pageHead + `
<h1>{{.Title}}</h1>
{{if .Message}}<p class="err" role="alert">{{.Message}}</p>{{end}}
{{if eq .Status "open"}}
<table><tr><th>Item</th><th class="n">Qty</th><th class="n">Amount</th></tr>
{{range .Items}}<tr><td>{{.Description}}{{if .Interval}} <span class="note">per {{.Interval}}</span>{{end}}</td><td class="n">{{.Quantity}}</td><td class="n">{{.Amount}}</td></tr>{{end}}
<tr><td colspan="2">Subtotal</td><td class="n">{{.Subtotal}}</td></tr>
{{if .Discount}}<tr><td colspan="2">Discount{{if .PromoCode}} ({{.PromoCode}}){{end}}</td><td class="n">-{{.Discount}}</td></tr>{{end}}
<tr><th colspan="2">{{if .Trial}}Total after the {{.Trial}}-day trial{{else}}Total due today{{end}}</th><th class="n" id="total">{{.Total}}</th></tr>
</table>
<form method="post" action="/checkout/{{.ID}}">
{{if not .Email}}<p><label>Email<br><input type="email" name="email" autocomplete="email"></label></p>{{else}}<p>Paying as {{.Email}}</p>{{end}}
<p><label>Card number<br><input type="text" name="card_number" inputmode="numeric" autocomplete="cc-number" placeholder="4242 4242 4242 4242"></label></p>
{{if .AllowPromo}}<p><label>Promotion code<br><input type="text" name="promotion_code" value="{{.PromoCode}}"></label></p>{{end}}
<button type="submit" name="action" value="pay">{{if eq .Mode "subscription"}}Subscribe{{else}}Pay {{.Total}}{{end}}</button>
{{if .CancelURL}}<button type="submit" name="action" value="cancel" formnovalidate>Cancel</button>{{end}}
</form>
{{if .CancelURL}}<p><a href="{{.CancelURL}}">← Back</a></p>{{end}}
<h2>Test cards</h2><p class="note">Any future expiry date and any CVC; the number decides what happens.</p>
<table>{{range .Cards}}<tr><td><code>{{.Number}}</code></td><td>{{.Does}}</td></tr>{{end}}</table>
{{else if eq .Status "complete"}}<p class="ok">This Checkout Session is complete.</p>{{if .SuccessURL}}<p><a href="{{.SuccessURL}}">Continue</a></p>{{end}}
{{else}}<p class="err">This Checkout Session has expired. Return to the merchant to start again.</p>{{if .CancelURL}}<p><a href="{{.CancelURL}}">Back</a></p>{{end}}
{{end}}
</body></html>`))
})

type checkoutItemView struct {
	Description, Amount, Interval string
	Quantity                      int64
}

type checkoutView struct {
	Title, ID, Status, Mode, Message, Email, PromoCode string
	Subtotal, Discount, Total, CancelURL, SuccessURL   string
	AllowPromo                                         bool
	Trial                                              int64
	Items                                              []checkoutItemView
	Cards                                              []struct{ Number, Does string }
}

// checkoutView renders a session for its page (under the lock).
func (s *Server) checkoutView(cs object, msg string) checkoutView {
	in := s.internal(str(cs["id"]))
	cur := str(cs["currency"])
	v := checkoutView{
		Title: "Pay", ID: str(cs["id"]), Status: str(cs["status"]), Mode: str(cs["mode"]), Message: msg,
		Subtotal: formatAmount(num(cs["amount_subtotal"]), cur), Total: formatAmount(num(cs["amount_total"]), cur),
		CancelURL: str(cs["cancel_url"]), SuccessURL: successURL(cs), AllowPromo: cs["allow_promotion_codes"] == true,
		Trial: num(in["trial_period_days"]), Cards: TestCards,
	}
	if cs["mode"] == "subscription" {
		v.Title = "Subscribe"
	}
	if d := num(cs["total_details"].(map[string]any)["amount_discount"]); d > 0 {
		v.Discount = formatAmount(d, cur)
	}
	if pc := s.get("promotion_code", str(in["promotion_code"])); pc != nil {
		v.PromoCode = str(pc["code"])
	}
	v.Email = str(cs["customer_email"])
	if cu := s.get("customer", idOf(cs["customer"])); cu != nil {
		v.Email = str(cu["email"])
	}
	if v.Email == "" {
		v.Email = str(in["email"])
	}
	for _, x := range asList(in["line_items"]) {
		it := x.(map[string]any)
		price, _ := it["price"].(map[string]any)
		v.Items = append(v.Items, checkoutItemView{Description: str(it["description"]), Quantity: num(it["quantity"]),
			Amount: formatAmount(num(it["amount_subtotal"]), cur), Interval: intervalLabel(price)})
	}
	return v
}

func renderPage(w http.ResponseWriter, t *template.Template, status int, v any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := t.Execute(w, v); err != nil {
		fmt.Fprintf(w, "<p>page failed: %s</p>", template.HTMLEscapeString(err.Error()))
	}
}

// checkoutPage serves GET /checkout/{id}.
func (s *Server) checkoutPage(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	cs := s.get("checkout.session", r.PathValue("id"))
	var v checkoutView
	if cs != nil {
		v = s.checkoutView(cs, s.lastCheckoutError(cs))
	}
	s.mu.Unlock()
	if cs == nil {
		http.Error(w, "The Stripe sandbox has no Checkout Session "+r.PathValue("id")+".", http.StatusNotFound)
		return
	}
	status := http.StatusOK
	if v.Status == "complete" && v.SuccessURL != "" {
		// Back from a 3D Secure challenge that completed the session.
		http.Redirect(w, r, v.SuccessURL, http.StatusSeeOther)
		return
	}
	if v.Status == "expired" {
		status = http.StatusGone
	}
	renderPage(w, checkoutTmpl(), status, v)
}

// checkoutSubmit serves POST /checkout/{id}: action=pay with card_number
// (and promotion_code, email), or action=cancel.
func (s *Server) checkoutSubmit(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "Bad form: "+err.Error(), http.StatusBadRequest)
		return
	}
	var out checkoutOutcome
	var v checkoutView
	found := true
	err := s.locked(func(c *call) error {
		cs := s.get("checkout.session", r.PathValue("id"))
		if cs == nil {
			found = false
			return nil
		}
		switch r.PostForm.Get("action") {
		case "cancel":
			if u := str(cs["cancel_url"]); u != "" {
				out.redirect = u
			} else {
				out = checkoutOutcome{status: http.StatusBadRequest, msg: "This Checkout Session has no cancel_url."}
			}
		case "pay", "":
			out = s.payCheckout(c, cs, r.PostForm.Get("card_number"), r.PostForm.Get("promotion_code"), strings.TrimSpace(r.PostForm.Get("email")))
		default:
			out = checkoutOutcome{status: http.StatusBadRequest, msg: "Unknown action " + r.PostForm.Get("action") + ": use pay or cancel."}
		}
		if out.redirect == "" {
			v = s.checkoutView(cs, out.msg)
		}
		return nil
	})
	switch {
	case err != nil:
		http.Error(w, "The sandbox failed: "+err.Error(), http.StatusInternalServerError)
	case !found:
		http.Error(w, "The Stripe sandbox has no Checkout Session "+r.PathValue("id")+".", http.StatusNotFound)
	case out.redirect != "":
		http.Redirect(w, r, out.redirect, http.StatusSeeOther)
	default:
		renderPage(w, checkoutTmpl(), out.status, v)
	}
}

// lastCheckoutError is the decline or failed authentication of the
// session's latest payment attempt, shown when the customer comes back
// from a 3D Secure challenge.
func (s *Server) lastCheckoutError(cs object) string {
	if cs["status"] != "open" {
		return ""
	}
	pi := s.get("payment_intent", idOf(cs["payment_intent"]))
	if sub := s.get("subscription", str(s.internal(str(cs["id"]))["subscription"])); sub != nil {
		if inv := s.get("invoice", idOf(sub["latest_invoice"])); inv != nil {
			pi = s.get("payment_intent", idOf(inv["payment_intent"]))
		}
	}
	if pi == nil || pi["status"] != "requires_payment_method" {
		return ""
	}
	le, _ := pi["last_payment_error"].(map[string]any)
	return str(le["message"])
}
