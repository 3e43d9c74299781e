package billing_test

import (
	"sync"
	"testing"
	"time"

	"billingapi/auth"
	"billingapi/billing"
	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"
)

func TestEnsureCustomer(t *testing.T) {
	for _, backend := range testenv.Databases() {
		t.Run(backend.Name, func(t *testing.T) {
			f := newFixture(t, backend.URL(t), billing.Config{})

			t.Run("TwentyConcurrentFirstPaymentsCreateOneCustomer", func(t *testing.T) {
				ws := f.workspace(t, "alice")
				f.stripe.Reset()
				const n = 20
				ids := make([]string, n)
				errs := make([]error, n)
				var wg sync.WaitGroup
				for i := range n {
					wg.Add(1)
					go func() {
						defer wg.Done()
						ids[i], errs[i] = f.svc.EnsureCustomer(f.as("alice"), ws)
					}()
				}
				wg.Wait()
				for i := range n {
					if errs[i] != nil {
						t.Fatalf("call %d: %v", i, errs[i])
					}
					if ids[i] != ids[0] || ids[i] == "" {
						t.Fatalf("calls returned different customers: %v", ids)
					}
				}
				if c := f.stripe.Count("POST", "/v1/customers"); c != 1 {
					t.Fatalf("Stripe customers created = %d, want 1", c)
				}
				stored, err := f.svc.Workspace(f.as("alice"), ws)
				if err != nil || stored.StripeCustomerID == nil || *stored.StripeCustomerID != ids[0] {
					t.Fatalf("stored customer = %v (err %v), want %s", stored.StripeCustomerID, err, ids[0])
				}
				if _, err := f.svc.EnsureCustomer(f.as("alice"), ws); err != nil || f.stripe.Count("POST", "/v1/customers") != 1 {
					t.Fatalf("a later call went to Stripe again (err %v)", err)
				}
			})
			t.Run("SendsIdentityMetadataAndIdempotencyKey", func(t *testing.T) {
				ws := f.workspace(t, "bob")
				if _, err := f.svc.EnsureCustomer(f.as("bob"), ws); err != nil {
					t.Fatal(err)
				}
				req, ok := f.stripe.Last("POST", "/v1/customers")
				if !ok {
					t.Fatal("no customer create")
				}
				want := map[string]string{
					"email": "bob@example.com", "name": "User bob",
					"metadata[user_id]": "bob", "metadata[workspace_id]": ws.String(),
				}
				for k, v := range want {
					if got := req.Form.Get(k); got != v {
						t.Errorf("%s = %q, want %q", k, got, v)
					}
				}
				for k := range req.Form {
					if len(k) > 9 && k[:9] == "metadata[" && k != "metadata[user_id]" && k != "metadata[workspace_id]" {
						t.Errorf("unexpected metadata key sent: %s", k)
					}
				}
				if req.Header.Get("Idempotency-Key") == "" {
					t.Error("customer create sent without an Idempotency-Key")
				}
			})
			t.Run("MemberIsForbiddenOutsiderNotFound", func(t *testing.T) {
				ws := f.workspace(t, "carol")
				if _, err := f.join(f.as("carol"), ws, "dan", auth.RoleMember); err != nil {
					t.Fatal(err)
				}
				before := f.stripe.Count("POST", "/v1/customers")
				if _, err := f.svc.EnsureCustomer(f.as("dan"), ws); billing.ErrorCode(err) != billing.CodeForbidden {
					t.Errorf("member: err = %v, want FORBIDDEN", err)
				}
				if _, err := f.svc.EnsureCustomer(f.as("mallory"), ws); billing.ErrorCode(err) != billing.CodeNotFound {
					t.Errorf("outsider: err = %v, want NOT_FOUND", err)
				}
				if _, err := f.svc.EnsureCustomer(f.ctx, ws); billing.ErrorCode(err) != billing.CodeUnauthenticated {
					t.Errorf("anonymous: err = %v, want UNAUTHENTICATED", err)
				}
				if n := f.stripe.Count("POST", "/v1/customers") - before; n != 0 {
					t.Errorf("refused calls created %d customers", n)
				}
			})
			t.Run("StripeFailureStoresNothingAndRetrySucceeds", func(t *testing.T) {
				ws := f.workspace(t, "erin")
				f.stripe.On(stripefake.Rule{Method: "POST", Path: "/v1/customers", Times: 1, Status: 400,
					Body: stripefake.StripeError("invalid_request_error", "parameter_invalid", "", "SENTINEL")})
				_, err := f.svc.EnsureCustomer(f.as("erin"), ws)
				if billing.ErrorCode(err) != billing.CodeInternal {
					t.Fatalf("err = %v, want INTERNAL", err)
				}
				stored, _ := f.svc.Workspace(f.as("erin"), ws)
				if stored.StripeCustomerID != nil {
					t.Fatalf("a failed creation stored customer %s", *stored.StripeCustomerID)
				}
				if _, err := f.svc.EnsureCustomer(f.as("erin"), ws); err != nil {
					t.Fatalf("retry: %v", err)
				}
			})
			t.Run("SystemViewerScopedToTheWorkspace", func(t *testing.T) {
				ws := f.workspace(t, "frank")
				other := f.workspace(t, "gina")
				sys := auth.NewContext(f.ctx, auth.SystemViewer(ws))
				if _, err := f.svc.EnsureCustomer(sys, ws); err != nil {
					t.Fatalf("system viewer for the workspace: %v", err)
				}
				req, _ := f.stripe.Last("POST", "/v1/customers")
				if req.Form.Get("metadata[user_id]") != "system" {
					t.Errorf("user_id for a system creation = %q", req.Form.Get("metadata[user_id]"))
				}
				if _, err := f.svc.EnsureCustomer(sys, other); billing.ErrorCode(err) != billing.CodeNotFound {
					t.Errorf("system viewer on another workspace: err = %v, want NOT_FOUND", err)
				}
			})
		})
	}
}

func TestEagerCustomerCreation(t *testing.T) {
	f := newFixture(t, testenv.Postgres(t), billing.Config{EagerCustomers: true})
	ws, err := f.svc.CreateWorkspace(f.as("henry"), "Eager")
	if err != nil {
		t.Fatal(err)
	}
	if ws.StripeCustomerID == nil {
		t.Fatal("workspace created without a customer in eager mode")
	}
	if n := f.stripe.Count("POST", "/v1/customers"); n != 1 {
		t.Fatalf("customers created = %d, want 1", n)
	}
	req, _ := f.stripe.Last("POST", "/v1/customers")
	if req.Form.Get("metadata[workspace_id]") != ws.ID.String() {
		t.Errorf("workspace_id sent = %q", req.Form.Get("metadata[workspace_id]"))
	}

	t.Run("StripeDownStillCreatesTheWorkspace", func(t *testing.T) {
		f.stripe.On(stripefake.Rule{Method: "POST", Path: "/v1/customers", Times: 10, Status: 503,
			Body: stripefake.StripeError("api_error", "", "", "down")})
		ws, err := f.svc.CreateWorkspace(f.as("henry"), "Later")
		if err != nil {
			t.Fatalf("create workspace with Stripe down: %v", err)
		}
		if ws.StripeCustomerID != nil {
			t.Fatal("a customer id was stored although Stripe failed")
		}
	})
}

// TestEnsureCustomerBesideARowLock: a transaction that only locks the
// workspace row (as applying a subscription does) is not a customer being
// created: a first payment meanwhile still gets its customer, after the
// row is free, rather than PAYMENT_PROVIDER_UNAVAILABLE.
func TestEnsureCustomerBesideARowLock(t *testing.T) {
	f := newFixture(t, testenv.Postgres(t), billing.Config{})
	ws := f.workspace(t, "alice")
	tx, err := f.store.SQL.BeginTx(f.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(f.ctx, `SELECT id FROM workspaces WHERE id = $1 FOR UPDATE`, ws); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	var id string
	go func() {
		var err error
		id, err = f.svc.EnsureCustomer(f.as("alice"), ws)
		done <- err
	}()
	time.Sleep(300 * time.Millisecond) // the first payment meets the locked row
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil || id == "" {
		t.Fatalf("EnsureCustomer beside a row lock: %q, %v", id, err)
	}
	if c := f.stripe.Count("POST", "/v1/customers"); c != 1 {
		t.Fatalf("Stripe customers created = %d, want 1", c)
	}
}
