package main

import (
	"strings"
	"testing"

	"billingapi/internal/testenv"
)

func TestBillingPortalSession(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), map[string]string{"APP_BASE_URL": "https://app.example.com"})
	const q = `mutation($w: ID!, $r: String) { createBillingPortalSession(workspaceId: $w, returnUrl: $r) }`
	t.Run("OwnerGetsThePortalURL", func(t *testing.T) {
		var out struct{ CreateBillingPortalSession string }
		w.gql(t, w.alice, q, map[string]any{"w": w.wsA, "r": "https://app.example.com/settings/billing"}).Decode(t, &out)
		if !strings.HasPrefix(out.CreateBillingPortalSession, "https://") {
			t.Fatalf("portal URL = %q", out.CreateBillingPortalSession)
		}
		req, _ := w.fake.Last("POST", "/v1/billing_portal/sessions")
		if !strings.HasPrefix(req.Form.Get("customer"), "cus_") || req.Form.Get("return_url") != "https://app.example.com/settings/billing" ||
			req.Header.Get("Idempotency-Key") == "" {
			t.Fatalf("portal params = %v", req.Form)
		}
	})
	t.Run("DefaultReturnURL", func(t *testing.T) {
		w.gql(t, w.alice, q, map[string]any{"w": w.wsA})
		req, _ := w.fake.Last("POST", "/v1/billing_portal/sessions")
		if req.Form.Get("return_url") != "https://app.example.com/billing" {
			t.Fatalf("return_url = %q", req.Form.Get("return_url"))
		}
	})
	for name, tc := range map[string]struct {
		token, ret, code string
	}{
		"ForeignReturnURL":    {"alice", "https://evil.example/phish", "BAD_USER_INPUT"},
		"LookalikeReturnURL":  {"alice", "https://app.example.com.evil.example/", "BAD_USER_INPUT"},
		"PlainHTTPReturnURL":  {"alice", "http://app.example.com/billing", "BAD_USER_INPUT"},
		"UserInfoInReturnURL": {"alice", "https://user@app.example.com/", "BAD_USER_INPUT"},
		"MemberIsForbidden":   {"carol", "", "FORBIDDEN"},
		"OutsiderIsNotFound":  {"bob", "", "NOT_FOUND"},
		"AnonymousIsRefused":  {"", "", "UNAUTHENTICATED"},
	} {
		t.Run(name, func(t *testing.T) {
			tokens := map[string]string{"alice": w.alice, "carol": w.carol, "bob": w.bob, "": ""}
			vars := map[string]any{"w": w.wsA}
			if tc.ret != "" {
				vars["r"] = tc.ret
			}
			before := w.fake.Count("POST", "/v1/billing_portal/sessions")
			if r := w.gql(t, tokens[tc.token], q, vars); r.Code() != tc.code {
				t.Fatalf("code = %q, want %q: %s", r.Code(), tc.code, r.Raw)
			}
			if w.fake.Count("POST", "/v1/billing_portal/sessions") != before {
				t.Fatal("a refused request reached Stripe")
			}
		})
	}
}

func TestCreateSetupIntent(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), nil)
	const q = `mutation($w: ID!, $k: String!) { createSetupIntent(workspaceId: $w, idempotencyKey: $k) { setupIntentId clientSecret } }`
	var out struct {
		CreateSetupIntent struct{ SetupIntentID, ClientSecret string }
	}
	w.gql(t, w.alice, q, map[string]any{"w": w.wsA, "k": "card-1"}).Decode(t, &out)
	if !strings.HasPrefix(out.CreateSetupIntent.SetupIntentID, "seti_") || out.CreateSetupIntent.ClientSecret == "" {
		t.Fatalf("setup intent = %+v", out.CreateSetupIntent)
	}
	req, _ := w.fake.Last("POST", "/v1/setup_intents")
	if !strings.HasPrefix(req.Form.Get("customer"), "cus_") || req.Form.Get("usage") != "off_session" ||
		req.Form.Get("metadata[workspace_id]") != w.wsA || req.Form.Get("metadata[purpose]") != "save_payment_method" ||
		req.Header.Get("Idempotency-Key") == "" {
		t.Fatalf("setup intent params = %v", req.Form)
	}
	for token, code := range map[string]string{w.carol: "FORBIDDEN", w.bob: "NOT_FOUND", "": "UNAUTHENTICATED"} {
		if r := w.gql(t, token, q, map[string]any{"w": w.wsA, "k": "x"}); r.Code() != code {
			t.Errorf("code = %q, want %q: %s", r.Code(), code, r.Raw)
		}
	}
	if r := w.gql(t, w.alice, q, map[string]any{"w": w.wsA, "k": "has space"}); r.Code() != "BAD_USER_INPUT" {
		t.Errorf("bad idempotency key: %s", r.Raw)
	}
}
