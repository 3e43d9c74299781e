package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"billingapi/auth"
	"billingapi/sandbox"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
)

// A scenario is a scripted billing lifecycle, driven through our GraphQL
// API (and, where a person would act, the sandbox's hosted pages and the
// Stripe.js calls a browser would make) against a fresh sandbox and a
// fresh API. `make scenarios` prints each as a timeline; each is also a
// test (scenarios_test.go).
type scenario struct {
	Name string
	What string
	Run  func(d *driver) error
}

// scenarios is the set `make scenarios` runs, in order.
var scenarios = []scenario{
	{"checkout", "Checkout with 4242, active, a month later the renewal is paid", scenarioCheckout},
	{"trial", "trial -> active -> renewal", scenarioTrial},
	{"recovered", "failed renewal -> recovered with a new card", scenarioRecovered},
	{"canceled-after-retries", "failed renewal -> canceled after the retries", scenarioCanceledAfterRetries},
	{"plan-change", "plan change with proration", scenarioPlanChange},
	{"cancel-at-period-end", "cancel at period end", scenarioCancelAtPeriodEnd},
	{"resume", "cancel at period end, then resume", scenarioResume},
	{"3ds-payment", "a one-time payment with 3D Secure", scenario3DS},
	{"refunds", "a partial then a full refund", scenarioRefunds},
	{"checkout-abandoned", "a Checkout payment abandoned: the session expires", scenarioAbandoned},
}

// runScenarios is `server scenarios [NAME...]`: it runs the named
// scenarios (all by default), prints their timelines, and fails when any
// ends in a state other than the one it expects.
func runScenarios(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("scenarios", stderr)
	list := fs.Bool("list", false, "list the scenarios and exit")
	chaos := fs.Bool("chaos", false, "deliver every webhook twice and out of order (SANDBOX_CHAOS)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *list {
		for _, sc := range scenarios {
			fmt.Fprintf(stdout, "%-24s %s\n", sc.Name, sc.What)
		}
		return nil
	}
	chosen := scenarios
	if fs.NArg() > 0 {
		chosen = nil
		for _, name := range fs.Args() {
			i := slices.IndexFunc(scenarios, func(s scenario) bool { return s.Name == name })
			if i < 0 {
				return fmt.Errorf("no scenario %q (see `server scenarios -list`)", name)
			}
			chosen = append(chosen, scenarios[i])
		}
	}
	var failed []string
	for _, sc := range chosen {
		dir, err := os.MkdirTemp("", "billing-scenario-")
		if err != nil {
			return err
		}
		err = playScenario(ctx, sc, dir, stdout, *chaos)
		os.RemoveAll(dir)
		if err != nil {
			fmt.Fprintf(stdout, "  FAIL: %v\n\n", err)
			failed = append(failed, sc.Name)
			continue
		}
		fmt.Fprintf(stdout, "  ok\n\n")
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", len(chosen)-len(failed), len(failed))
	if len(failed) > 0 {
		return fmt.Errorf("scenarios failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// playScenario starts a sandbox and an API (embedded SQLite and Redis, in
// dir), runs the scenario, and stops both. With chaos, the sandbox
// delivers every event twice and out of order.
func playScenario(ctx context.Context, sc scenario, dir string, out io.Writer, chaos bool) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	d, closeAll, err := openDriver(ctx, dir, out, chaos)
	if err != nil {
		return err
	}
	defer closeAll()
	fmt.Fprintf(out, "== %s: %s\n", sc.Name, sc.What)
	return sc.Run(d)
}

// openDriver starts a sandbox seeded with the example catalog and an API
// pointed at it (embedded SQLite and Redis, in dir), creates a workspace
// owned by the driver's user, and returns the driver and a function that
// stops both.
func openDriver(ctx context.Context, dir string, out io.Writer, chaos bool) (*driver, func(), error) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	sbLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	sbURL := "http://" + sbLn.Addr().String()
	sb, err := sandbox.New(sandbox.Options{DataDir: filepath.Join(dir, "sandbox"), PublicURL: sbURL,
		RetryBase: 50 * time.Millisecond, RetryMax: time.Second, Log: quiet, Chaos: chaos})
	if err != nil {
		sbLn.Close()
		return nil, nil, err
	}
	sbSrv := &http.Server{Handler: sb}
	go sbSrv.Serve(sbLn)
	closers := []func(){func() { sbSrv.Close(); sb.Close() }}
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	fail := func(err error) (*driver, func(), error) { closeAll(); return nil, nil, err }

	sc0 := sandboxClient(sbURL, "sk_test_scenario")
	keys, err := seedCatalog(ctx, sc0)
	if err != nil {
		return fail(err)
	}
	env := map[string]string{
		"HTTP_ADDR": "127.0.0.1:0", "DATABASE_URL": filepath.Join(dir, "billing.db"),
		"STRIPE_API_BASE": sbURL, "STRIPE_SECRET_KEY": "sk_test_scenario", "STRIPE_PUBLISHABLE_KEY": "pk_test_scenario",
		"STRIPE_WEBHOOK_SECRET": devWebhookSecret, "PLAN_LOOKUP_KEYS": strings.Join(keys, ","),
		"RATE_LIMIT_PER_MINUTE": "10000", "STRIPE_TEST_CLOCKS": "true",
	}
	cfg, err := LoadConfig(func(k string) string { return env[k] })
	if err != nil {
		return fail(err)
	}
	m := NewMain(cfg, quiet)
	if err := m.Open(ctx); err != nil {
		m.Close()
		return fail(err)
	}
	closers = append(closers, func() { m.Close() })
	sb.SetWebhook(m.URL()+"/webhooks/stripe/", devWebhookSecret)
	token, err := devToken(cfg, auth.Claims{Subject: "scenario-owner", Email: "owner@example.com", Name: "Scenario Owner"}, time.Hour)
	if err != nil {
		return fail(err)
	}
	admin, err := devToken(cfg, auth.Claims{Subject: "scenario-admin", Email: "admin@example.com", Name: "Scenario Admin", Admin: true}, time.Hour)
	if err != nil {
		return fail(err)
	}
	d := &driver{ctx: ctx, api: m.URL(), token: token, admin: admin, sb: sb, sbURL: sbURL, sc: sc0, out: out, start: sb.Now()}
	var ws struct {
		CreateWorkspace struct{ ID string }
	}
	if err := d.gql(`mutation { createWorkspace(input: {name: "Acme"}) { id } }`, nil, &ws); err != nil {
		return fail(err)
	}
	d.ws = ws.CreateWorkspace.ID
	return d, closeAll, nil
}

// driver drives one scenario and prints its timeline.
type driver struct {
	ctx          context.Context
	api, sbURL   string
	token, admin string
	sb           *sandbox.Server
	sc           *client.API
	out          io.Writer
	start        time.Time
	ws           string
	seen         string // the newest sandbox event already printed
}

// scenarioError is an error the API answered, with its extensions.code.
type scenarioError struct {
	Message    string
	Extensions map[string]any
}

func (e scenarioError) Error() string { return fmt.Sprintf("%s (%v)", e.Message, e.Extensions["code"]) }

// gql runs an operation as the workspace owner and decodes data into out;
// the first GraphQL error is returned as a scenarioError.
func (d *driver) gql(query string, vars map[string]any, out any) error {
	return d.gqlAs(d.token, query, vars, out)
}

func (d *driver) gqlAs(token, query string, vars map[string]any, out any) error {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, err := http.NewRequestWithContext(d.ctx, http.MethodPost, d.api+"/graphql", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	var r struct {
		Data   json.RawMessage
		Errors []scenarioError
	}
	if err := json.NewDecoder(res.Body).Decode(&r); err != nil {
		return fmt.Errorf("graphql: %d: %w", res.StatusCode, err)
	}
	if out != nil && len(r.Data) > 0 && string(r.Data) != "null" {
		if err := json.Unmarshal(r.Data, out); err != nil {
			return err
		}
	}
	if len(r.Errors) > 0 {
		return r.Errors[0]
	}
	return nil
}

// state is what the API says of the workspace.
type scenarioState struct {
	Status            string
	CancelAtPeriodEnd bool
	CanceledAt        *string
	Access            string
	Warning           *string
	Invoices          []struct {
		Status     string
		AmountPaid int
		AmountDue  int
	}
}

func (s scenarioState) String() string {
	st := s.Status
	if st == "" {
		st = "no subscription"
	}
	out := fmt.Sprintf("%s, access %s", st, s.Access)
	if s.CancelAtPeriodEnd {
		out += ", ends at period end"
	}
	if len(s.Invoices) > 0 {
		inv := s.Invoices[0]
		out += fmt.Sprintf(", %d invoices (last %s, %d paid)", len(s.Invoices), inv.Status, inv.AmountPaid)
	}
	if s.Warning != nil {
		out += fmt.Sprintf(", warning %q", *s.Warning)
	}
	return out
}

func (d *driver) state() (scenarioState, error) {
	var r struct {
		Workspace struct {
			Subscription *struct {
				Status            string
				CancelAtPeriodEnd bool
				CanceledAt        *string
			}
			Access struct {
				Level   string
				Warning *string
			}
			Invoices struct {
				Edges []struct {
					Node struct {
						Status     string
						AmountPaid int
						AmountDue  int
					}
				}
			}
		}
	}
	err := d.gql(`query($w: ID!) { workspace(id: $w) {
		subscription { status cancelAtPeriodEnd canceledAt }
		access { level warning }
		invoices(first: 50) { edges { node { status amountPaid amountDue } } } } }`, map[string]any{"w": d.ws}, &r)
	if err != nil {
		return scenarioState{}, err
	}
	s := scenarioState{Access: r.Workspace.Access.Level, Warning: r.Workspace.Access.Warning}
	if sub := r.Workspace.Subscription; sub != nil {
		s.Status, s.CancelAtPeriodEnd, s.CanceledAt = sub.Status, sub.CancelAtPeriodEnd, sub.CanceledAt
	}
	for _, e := range r.Workspace.Invoices.Edges {
		s.Invoices = append(s.Invoices, e.Node)
	}
	return s, nil
}

// settle waits (up to 15 s) for the sandbox's webhooks to be delivered
// and check to report done, then prints the step: the day on the clock,
// what was done, the events Stripe sent for it, and our state as check
// describes it.
func (d *driver) settle(what string, check func() (done bool, state string, err error)) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		wctx, cancel := context.WithTimeout(d.ctx, 10*time.Second)
		err := d.sb.WaitDelivered(wctx)
		cancel()
		if err != nil {
			return err
		}
		done, state, err := check()
		if err == nil && done {
			events, err := d.newEvents()
			if err != nil {
				return err
			}
			fmt.Fprintf(d.out, "  day %5.1f  %s\n             events: %s\n             state:  %s\n",
				d.now().Sub(d.start).Hours()/24, what, strings.Join(events, ", "), state)
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			return fmt.Errorf("%s: the API shows %s", what, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// until settles on a workspace state that satisfies ok.
func (d *driver) until(what string, ok func(scenarioState) bool) (scenarioState, error) {
	var s scenarioState
	err := d.settle(what, func() (bool, string, error) {
		var err error
		s, err = d.state()
		return err == nil && ok(s), s.String(), err
	})
	return s, err
}

// newEvents lists the types of the sandbox's events since the last step,
// oldest first, leaving out the catalog's.
func (d *driver) newEvents() ([]string, error) {
	var out []string
	lp := &stripe.EventListParams{}
	lp.Limit = stripe.Int64(100)
	lp.Context = d.ctx
	newest := ""
	it := d.sc.Events.List(lp)
	for it.Next() {
		ev := it.Event()
		if newest == "" {
			newest = ev.ID
		}
		if ev.ID == d.seen {
			break
		}
		t := string(ev.Type)
		if strings.HasPrefix(t, "product.") || strings.HasPrefix(t, "price.") {
			continue
		}
		out = append(out, t)
	}
	if err := it.Err(); err != nil {
		return nil, err
	}
	if newest != "" {
		d.seen = newest
	}
	slices.Reverse(out)
	if len(out) == 0 {
		out = []string{"(none)"}
	}
	return out, nil
}

// clock returns the Stripe test clock the workspace's customer lives on
// (the API creates it with STRIPE_TEST_CLOCKS), or "" before the customer
// exists.
func (d *driver) clock() (string, error) {
	lp := &stripe.CustomerListParams{}
	lp.Context = d.ctx
	it := d.sc.Customers.List(lp)
	for it.Next() {
		cu := it.Customer()
		if cu.Metadata["workspace_id"] != d.ws {
			continue
		}
		if cu.TestClock == nil {
			return "", fmt.Errorf("customer %s is not on a test clock", cu.ID)
		}
		return cu.TestClock.ID, nil
	}
	return "", it.Err()
}

// now returns the time on the workspace's test clock (the sandbox's own
// clock before the customer exists).
func (d *driver) now() time.Time {
	if id, err := d.clock(); err == nil && id != "" {
		if tc, err := d.sc.TestHelpersTestClocks.Get(id, &stripe.TestHelpersTestClockParams{Params: stripe.Params{Context: d.ctx}}); err == nil {
			return time.Unix(tc.FrozenTime, 0)
		}
	}
	return d.sb.Now()
}

// advance moves the workspace's test clock forward through Stripe's API.
func (d *driver) advance(dur time.Duration) error {
	id, err := d.clock()
	if err != nil {
		return err
	}
	if id == "" {
		return errors.New("advance: the workspace has no Stripe customer (and so no test clock) yet")
	}
	tc, err := d.sc.TestHelpersTestClocks.Get(id, &stripe.TestHelpersTestClockParams{Params: stripe.Params{Context: d.ctx}})
	if err != nil {
		return err
	}
	_, err = d.sc.TestHelpersTestClocks.Advance(id, &stripe.TestHelpersTestClockAdvanceParams{
		Params: stripe.Params{Context: d.ctx}, FrozenTime: stripe.Int64(tc.FrozenTime + int64(dur/time.Second))})
	return err
}

// checkout opens a Checkout Session through the API and pays it on the
// sandbox's hosted page with the card number, as a person would.
func (d *driver) checkout(mode, lookupKey, card string) (string, error) {
	var r struct {
		CreateCheckoutSession struct{ SessionID, CheckoutURL string }
	}
	if err := d.gql(`mutation($w: ID!, $k: String!, $m: CheckoutMode!) { createCheckoutSession(input: {workspaceId: $w, lookupKey: $k, mode: $m}) { sessionId checkoutUrl } }`,
		map[string]any{"w": d.ws, "k": lookupKey, "m": mode}, &r); err != nil {
		return "", err
	}
	if card == "" {
		return r.CreateCheckoutSession.SessionID, nil
	}
	if err := d.submit(r.CreateCheckoutSession.CheckoutURL, url.Values{"card_number": {card}, "action": {"pay"}}); err != nil {
		return "", err
	}
	return r.CreateCheckoutSession.SessionID, nil
}

// submit posts a hosted page's form and fails unless the page accepted it
// (a redirect, or 200 without an error message).
func (d *driver) submit(page string, form url.Values) error {
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.PostForm(page, form)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode/100 == 3 {
		return nil
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %d: %.300s", page, res.StatusCode, body)
	}
	return nil
}

// saveCard saves a card the way an SPA does: a SetupIntent from the API,
// confirmed with the card as Stripe.js would (passing 3D Secure when the
// card asks for it), then made the default through the API.
func (d *driver) saveCard(token string) (string, error) {
	var r struct {
		CreateSetupIntent struct{ SetupIntentID string }
	}
	if err := d.gql(`mutation($w: ID!, $k: String!) { createSetupIntent(workspaceId: $w, idempotencyKey: $k) { setupIntentId } }`,
		map[string]any{"w": d.ws, "k": "save-" + token + "-" + fmt.Sprint(time.Now().UnixNano())}, &r); err != nil {
		return "", err
	}
	si, err := d.sc.SetupIntents.Confirm(r.CreateSetupIntent.SetupIntentID, &stripe.SetupIntentConfirmParams{PaymentMethod: stripe.String(token)})
	if err != nil {
		return "", fmt.Errorf("confirm the SetupIntent with %s: %w", token, err)
	}
	if si.Status == stripe.SetupIntentStatusRequiresAction {
		if err := d.submit(d.sbURL+"/3ds/"+si.ID, url.Values{"result": {"pass"}}); err != nil {
			return "", err
		}
		if si, err = d.sc.SetupIntents.Get(si.ID, nil); err != nil {
			return "", err
		}
	}
	if si.Status != stripe.SetupIntentStatusSucceeded || si.PaymentMethod == nil {
		return "", fmt.Errorf("the SetupIntent with %s is %s", token, si.Status)
	}
	pm := si.PaymentMethod.ID
	if err := d.gql(`mutation($w: ID!, $p: String!) { setDefaultPaymentMethod(workspaceId: $w, paymentMethodId: $p) { id } }`,
		map[string]any{"w": d.ws, "p": pm}, nil); err != nil {
		return "", err
	}
	return pm, nil
}

func isStatus(status, access string) func(scenarioState) bool {
	return func(s scenarioState) bool { return s.Status == status && (access == "" || s.Access == access) }
}

// subscribe pays a subscription's Checkout with the card and waits for the
// API to show it active.
func (d *driver) subscribe(lookupKey, card string) error {
	if _, err := d.checkout("SUBSCRIPTION", lookupKey, card); err != nil {
		return err
	}
	_, err := d.until("paid Checkout for "+lookupKey+" with "+card, isStatus("ACTIVE", "FULL"))
	return err
}

// cancelAtPeriodEnd cancels through the API and waits for the API to show
// the cancellation scheduled, with the time it was asked for.
func (d *driver) cancelAtPeriodEnd() error {
	if err := d.gql(`mutation($w: ID!) { cancelSubscription(input: {workspaceId: $w}) { status } }`, map[string]any{"w": d.ws}, nil); err != nil {
		return err
	}
	_, err := d.until("canceled at period end", func(s scenarioState) bool {
		return s.Status == "ACTIVE" && s.CancelAtPeriodEnd && s.CanceledAt != nil
	})
	return err
}

// paidInvoices counts the paid invoices.
func paidInvoices(s scenarioState) int {
	n := 0
	for _, inv := range s.Invoices {
		if inv.Status == "PAID" {
			n++
		}
	}
	return n
}

// month moves the clock past a monthly renewal: a period is at most 31
// days, and Stripe keeps a renewal invoice a draft for an hour before it
// finalizes and charges it.
const month = 32 * 24 * time.Hour

func scenarioCheckout(d *driver) error {
	if err := d.subscribe("pro_monthly", "4242 4242 4242 4242"); err != nil {
		return err
	}
	if err := d.advance(month); err != nil {
		return err
	}
	_, err := d.until("a month later", func(s scenarioState) bool { return s.Status == "ACTIVE" && paidInvoices(s) == 2 })
	return err
}

func scenarioTrial(d *driver) error {
	if err := d.gql(`mutation($w: ID!) { createSubscription(input: {workspaceId: $w, lookupKey: "starter_monthly", trialPeriodDays: 14}) { subscription { status } } }`,
		map[string]any{"w": d.ws}, nil); err != nil {
		return err
	}
	if _, err := d.until("subscribed to starter_monthly with a 14-day trial", isStatus("TRIALING", "FULL")); err != nil {
		return err
	}
	if _, err := d.saveCard("pm_card_visa"); err != nil {
		return err
	}
	if _, err := d.until("saved 4242 as the default card", isStatus("TRIALING", "FULL")); err != nil {
		return err
	}
	if err := d.advance(15 * 24 * time.Hour); err != nil {
		return err
	}
	if _, err := d.until("the trial ended", func(s scenarioState) bool { return s.Status == "ACTIVE" && paidInvoices(s) >= 1 }); err != nil {
		return err
	}
	if err := d.advance(month); err != nil {
		return err
	}
	_, err := d.until("a month later", func(s scenarioState) bool { return s.Status == "ACTIVE" && paidInvoices(s) >= 2 })
	return err
}

// failingRenewal subscribes with 4242, then makes 4000000000000341 (saved,
// but every charge declined) the default card and lets a renewal fail.
func failingRenewal(d *driver) error {
	if err := d.subscribe("starter_monthly", "4242 4242 4242 4242"); err != nil {
		return err
	}
	if _, err := d.saveCard("pm_card_chargeCustomerFail"); err != nil {
		return err
	}
	if _, err := d.until("made 4000 0000 0000 0341 the default card", isStatus("ACTIVE", "FULL")); err != nil {
		return err
	}
	if err := d.advance(month); err != nil {
		return err
	}
	s, err := d.until("the renewal was declined", isStatus("PAST_DUE", "LIMITED"))
	if err == nil && s.Warning == nil {
		err = errors.New("past due without a warning")
	}
	return err
}

func scenarioRecovered(d *driver) error {
	if err := failingRenewal(d); err != nil {
		return err
	}
	if _, err := d.saveCard("pm_card_visa"); err != nil {
		return err
	}
	if _, err := d.until("saved 4242 as the new default card", isStatus("PAST_DUE", "LIMITED")); err != nil {
		return err
	}
	if err := d.advance(4 * 24 * time.Hour); err != nil {
		return err
	}
	_, err := d.until("the next retry", isStatus("ACTIVE", "FULL"))
	return err
}

func scenarioCanceledAfterRetries(d *driver) error {
	if err := failingRenewal(d); err != nil {
		return err
	}
	if err := d.advance(16 * 24 * time.Hour); err != nil {
		return err
	}
	_, err := d.until("every retry declined", isStatus("CANCELED", "NONE"))
	return err
}

func scenarioPlanChange(d *driver) error {
	if err := d.subscribe("starter_monthly", "4242 4242 4242 4242"); err != nil {
		return err
	}
	if err := d.advance(15 * 24 * time.Hour); err != nil {
		return err
	}
	var r struct {
		ChangeSubscriptionPlan struct{ LookupKey string }
	}
	if err := d.gql(`mutation($w: ID!) { changeSubscriptionPlan(input: {workspaceId: $w, lookupKey: "pro_monthly", prorationBehavior: ALWAYS_INVOICE}) { lookupKey } }`,
		map[string]any{"w": d.ws}, &r); err != nil {
		return err
	}
	s, err := d.until("half-way through the month, upgraded to pro_monthly ($29), invoiced at once", func(s scenarioState) bool {
		return s.Status == "ACTIVE" && paidInvoices(s) == 2
	})
	if err != nil {
		return err
	}
	// Half a month of the $20 difference, give or take a day.
	if p := s.Invoices[0].AmountPaid; p < 800 || p > 1200 {
		return fmt.Errorf("the proration invoice charged %d cents; want about half of 2000", p)
	}
	return nil
}

func scenarioCancelAtPeriodEnd(d *driver) error {
	if err := d.subscribe("pro_monthly", "4242 4242 4242 4242"); err != nil {
		return err
	}
	if err := d.cancelAtPeriodEnd(); err != nil {
		return err
	}
	if err := d.advance(month); err != nil {
		return err
	}
	s, err := d.until("the period ended", isStatus("CANCELED", "NONE"))
	if err == nil && paidInvoices(s) != 1 {
		err = fmt.Errorf("%d paid invoices; a canceled subscription must not renew", paidInvoices(s))
	}
	return err
}

func scenarioResume(d *driver) error {
	if err := d.subscribe("pro_monthly", "4242 4242 4242 4242"); err != nil {
		return err
	}
	if err := d.cancelAtPeriodEnd(); err != nil {
		return err
	}
	if err := d.gql(`mutation($w: ID!) { resumeSubscription(input: {workspaceId: $w}) { status } }`, map[string]any{"w": d.ws}, nil); err != nil {
		return err
	}
	if _, err := d.until("resumed", func(s scenarioState) bool { return s.Status == "ACTIVE" && !s.CancelAtPeriodEnd && s.CanceledAt == nil }); err != nil {
		return err
	}
	if err := d.advance(month); err != nil {
		return err
	}
	_, err := d.until("a month later: renewed", func(s scenarioState) bool { return s.Status == "ACTIVE" && paidInvoices(s) == 2 })
	return err
}

// payment creates a one-time payment with a saved card through the API.
func (d *driver) payment(pm string, amount int) (id, intent string, err error) {
	var r struct {
		CreatePaymentIntent struct {
			Payment         struct{ ID string }
			PaymentIntentID string
		}
	}
	err = d.gql(`mutation($w: ID!, $p: String!, $a: Int!, $k: String!) { createPaymentIntent(input: {workspaceId: $w, amount: $a, currency: "usd", purpose: "credits_pack", idempotencyKey: $k, paymentMethodId: $p}) { payment { id } paymentIntentId } }`,
		map[string]any{"w": d.ws, "p": pm, "a": amount, "k": fmt.Sprint("pay-", time.Now().UnixNano())}, &r)
	return r.CreatePaymentIntent.Payment.ID, r.CreatePaymentIntent.PaymentIntentID, err
}

// paymentStatus reads a payment's status and refunded amount through the API.
func (d *driver) paymentStatus() (status string, refunded int, err error) {
	var r struct {
		Workspace struct {
			Payments struct {
				Edges []struct {
					Node struct {
						Status         string
						RefundedAmount int
					}
				}
			}
		}
	}
	err = d.gql(`query($w: ID!) { workspace(id: $w) { payments(first: 1) { edges { node { status refundedAmount } } } } }`, map[string]any{"w": d.ws}, &r)
	if err == nil && len(r.Workspace.Payments.Edges) == 1 {
		n := r.Workspace.Payments.Edges[0].Node
		return n.Status, n.RefundedAmount, nil
	}
	return "", 0, err
}

// untilPayment settles on the latest payment's status and refunded amount.
func (d *driver) untilPayment(what, want string, refunded int) error {
	return d.settle(what, func() (bool, string, error) {
		status, ref, err := d.paymentStatus()
		return status == want && ref == refunded, fmt.Sprintf("payment %s, %d refunded", status, ref), err
	})
}

func scenario3DS(d *driver) error {
	pm, err := d.saveCard("pm_card_authenticationRequired")
	if err != nil {
		return err
	}
	_, intent, err := d.payment(pm, 5000)
	var ge scenarioError
	if !errors.As(err, &ge) || ge.Extensions["code"] != "REQUIRES_ACTION" {
		return fmt.Errorf("a payment with 4000 0027 6000 3184 answered %v; want REQUIRES_ACTION", err)
	}
	if err := d.untilPayment("paid $50 with 4000 0027 6000 3184: REQUIRES_ACTION", "REQUIRES_ACTION", 0); err != nil {
		return err
	}
	if err := d.submit(d.sbURL+"/3ds/"+intent, url.Values{"result": {"pass"}}); err != nil {
		return err
	}
	return d.untilPayment("passed the 3D Secure challenge", "SUCCEEDED", 0)
}

func scenarioRefunds(d *driver) error {
	pm, err := d.saveCard("pm_card_visa")
	if err != nil {
		return err
	}
	payment, _, err := d.payment(pm, 5000)
	if err != nil {
		return err
	}
	if err := d.untilPayment("paid $50 with 4242", "SUCCEEDED", 0); err != nil {
		return err
	}
	refund := func(amount any, key string) error {
		return d.gqlAs(d.admin, `mutation($p: ID!, $a: Int, $k: String!) { refundPayment(input: {paymentId: $p, amount: $a, reason: REQUESTED_BY_CUSTOMER, idempotencyKey: $k}) { id } }`,
			map[string]any{"p": payment, "a": amount, "k": key}, nil)
	}
	if err := refund(2000, "part"); err != nil {
		return err
	}
	if err := d.untilPayment("refunded $20", "PARTIALLY_REFUNDED", 2000); err != nil {
		return err
	}
	if err := refund(nil, "rest"); err != nil {
		return err
	}
	return d.untilPayment("refunded the rest", "REFUNDED", 5000)
}

func scenarioAbandoned(d *driver) error {
	// A one-time price, made by a platform admin as the README shows.
	var prod struct {
		CreateProduct struct{ ID string }
	}
	if err := d.gqlAs(d.admin, `mutation { createProduct(input: {name: "100 credits", plan: "credits", features: []}) { id } }`, nil, &prod); err != nil {
		return err
	}
	if err := d.gqlAs(d.admin, `mutation($p: String!) { createPrice(input: {productId: $p, unitAmount: 1000, currency: "usd", lookupKey: "credits_100"}) { priceId } }`,
		map[string]any{"p": prod.CreateProduct.ID}, nil); err != nil {
		return err
	}
	if _, err := d.checkout("PAYMENT", "credits_100", ""); err != nil {
		return err
	}
	if err := d.advance(25 * time.Hour); err != nil {
		return err
	}
	return d.settle("opened Checkout for a payment and left; a day later", func() (bool, string, error) {
		var r struct {
			Workspace struct {
				CheckoutSessions struct {
					Edges []struct{ Node struct{ Status string } }
				}
			}
		}
		err := d.gql(`query($w: ID!) { workspace(id: $w) { checkoutSessions(first: 1) { edges { node { status } } } } }`, map[string]any{"w": d.ws}, &r)
		status := "no session"
		if e := r.Workspace.CheckoutSessions.Edges; len(e) == 1 {
			status = "session " + e[0].Node.Status
		}
		return status == "session EXPIRED", status, err
	})
}
