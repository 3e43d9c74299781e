package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"billingapi/ent"
	"billingapi/ent/webhookevent"
	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"
)

func TestWebhookAdminSurface(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), nil)
	admin := w.token(t, "root", true)
	meta := map[string]string{"workspace_id": w.wsA}
	inv := stripefake.Event("evt_admin_inv", "invoice.payment_succeeded",
		stripefake.InvoiceJSON("in_admin", "cus_x", "", "paid", 1500, 1500, meta), time.Now())
	if status, _ := whPost(t, w.testServer, "/webhooks/stripe/", inv, whSign(inv)); status != http.StatusOK {
		t.Fatalf("invoice event answered %d", status)
	}
	unknown := stripefake.Event("evt_admin_unknown", "customer.tax_id.created", `{"id":"txi_1"}`, time.Now())
	if status, _ := whPost(t, w.testServer, "/webhooks/stripe", unknown, whSign(unknown)); status != http.StatusOK {
		t.Fatalf("unknown event answered %d", status)
	}
	whWaitStatus(t, w.testServer, "evt_admin_inv", webhookevent.StatusProcessed)
	skipped := whWaitStatus(t, w.testServer, "evt_admin_unknown", webhookevent.StatusSkipped)

	const list = `query($s: WebhookEventStatus, $t: String) { webhookEvents(status: $s, type: $t, first: 10) {
		totalCount edges { node { id stripeEventId type status attempts lastError workspaceId } } } }`
	type listJSON struct {
		WebhookEvents struct {
			TotalCount int
			Edges      []struct {
				Node struct {
					ID, StripeEventID, Type, Status string
					LastError, WorkspaceID          *string
				}
			}
		}
	}
	t.Run("AdminListsAndFilters", func(t *testing.T) {
		var all, onlySkipped, byType listJSON
		w.gql(t, admin, list, nil).Decode(t, &all)
		w.gql(t, admin, list, map[string]any{"s": "SKIPPED"}).Decode(t, &onlySkipped)
		w.gql(t, admin, list, map[string]any{"t": "invoice.payment_succeeded"}).Decode(t, &byType)
		if all.WebhookEvents.TotalCount != 2 || onlySkipped.WebhookEvents.TotalCount != 1 || byType.WebhookEvents.TotalCount != 1 {
			t.Fatalf("counts: all %d, skipped %d, by type %d", all.WebhookEvents.TotalCount, onlySkipped.WebhookEvents.TotalCount, byType.WebhookEvents.TotalCount)
		}
		n := onlySkipped.WebhookEvents.Edges[0].Node
		if n.StripeEventID != "evt_admin_unknown" || n.LastError == nil || !strings.Contains(*n.LastError, "unhandled") {
			t.Fatalf("skipped event = %+v", n)
		}
		if m := byType.WebhookEvents.Edges[0].Node; m.WorkspaceID == nil || *m.WorkspaceID != w.wsA || m.Status != "PROCESSED" {
			t.Fatalf("invoice event = %+v", m)
		}
	})
	t.Run("OnlyPlatformAdmins", func(t *testing.T) {
		for token, code := range map[string]string{w.alice: "FORBIDDEN", "": "UNAUTHENTICATED"} {
			if r := w.gql(t, token, list, nil); r.Code() != code {
				t.Errorf("list: code = %q, want %q", r.Code(), code)
			}
			if r := w.gql(t, token, `mutation($id: ID!) { replayWebhookEvent(id: $id) { status } }`, map[string]any{"id": skipped.ID.String()}); r.Code() != code {
				t.Errorf("replay: code = %q, want %q", r.Code(), code)
			}
		}
	})
	t.Run("ReplayAppliesTheEventAgain", func(t *testing.T) {
		r := w.gql(t, admin, `mutation($id: ID!) { replayWebhookEvent(id: $id) { status attempts } }`, map[string]any{"id": skipped.ID.String()})
		if r.Code() != "" || !strings.Contains(r.Raw, `"status":"RECEIVED"`) {
			t.Fatalf("replay: %s", r.Raw)
		}
		row := whWaitFor(t, w.testServer, "evt_admin_unknown", "skipped again after the replay", func(r *ent.WebhookEvent) bool {
			return r.Status == webhookevent.StatusSkipped && r.Attempts == 1 && r.ProcessedAt != nil && r.ProcessedAt.After(skipped.UpdateTime)
		})
		if row.LastError == "" {
			t.Fatal("replayed event lost its reason")
		}
		if r := w.gql(t, admin, `mutation { replayWebhookEvent(id: "6f1f5f0e-1111-4a4a-9999-0123456789ab") { status } }`, nil); r.Code() != "NOT_FOUND" {
			t.Fatalf("replay of an unknown event: %s", r.Raw)
		}
	})
	t.Run("MembersSeeTheirInvoices", func(t *testing.T) {
		const q = `query($id: ID!) { workspace(id: $id) { invoices { totalCount edges { node {
			stripeInvoiceId status paymentFailed amountDue amountPaid currency hostedInvoiceUrl invoicePdf periodStart } } } } }`
		r := w.gql(t, w.carol, q, map[string]any{"id": w.wsA})
		if r.Code() != "" || !strings.Contains(r.Raw, `"stripeInvoiceId":"in_admin"`) || !strings.Contains(r.Raw, `"amountPaid":1500`) ||
			!strings.Contains(r.Raw, `"status":"PAID"`) || !strings.Contains(r.Raw, "invoice.stripe.com") {
			t.Fatalf("carol's invoices: %s", r.Raw)
		}
		if r := w.gql(t, w.bob, q, map[string]any{"id": w.wsA}); r.Code() != "NOT_FOUND" {
			t.Fatalf("bob reads A's invoices: %s", r.Raw)
		}
	})
}

func TestRestartResumesUnprocessedEvents(t *testing.T) {
	dbURL := testenv.Postgres(t)
	redisURL, prefix := testenv.Redis(t)
	env := map[string]string{"REDIS_URL": redisURL, "REDIS_KEY_PREFIX": prefix}
	w := newPaymentsWorld(t, dbURL, env)
	// The server stops (a deploy, a crash) right after storing an event,
	// before its worker applies it: stop the worker first.
	w.stopWorker()
	<-w.workerDone
	w.stopWorker = nil
	ev := whPaymentEvent("evt_resume", "pi_resume", map[string]string{"workspace_id": w.wsA, "user_id": "alice", "purpose": "credits_pack"})
	if status, _ := whPost(t, w.testServer, "/webhooks/stripe/", ev, whSign(ev)); status != http.StatusOK {
		t.Fatalf("event answered %d", status)
	}
	time.Sleep(200 * time.Millisecond)
	if rows := whEventRows(t, w.testServer, "evt_resume"); len(rows) != 1 || rows[0].Status != webhookevent.StatusReceived {
		t.Fatalf("before the restart: %+v", rows)
	}
	// A new server on the same database picks it up.
	next := startServer(t, dbURL, withStripe(w.fake.URL, env))
	whWaitStatus(t, next, "evt_resume", webhookevent.StatusProcessed)
	if c := whPaymentsIn(t, next, w.wsA, "pi_resume"); c != 1 {
		t.Fatalf("payments after the restart = %d, want 1", c)
	}
}
