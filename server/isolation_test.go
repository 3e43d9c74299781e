package main

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"billingapi/internal/testenv"
)

// isolationCase is how one root field is tried as each kind of caller.
// The expected code per caller is "" for "answers", "PUBLIC" marks a field
// anyone may read; workspace-scoped fields are tried on workspace A.
type isolationCase struct {
	query string
	vars  func(w *paymentsWorld, paymentID string) map[string]any
	// outsider is bob (owner of B only), member is carol (MEMBER of A),
	// user is alice's role where admin-only fields are tried as a
	// non-admin owner.
	outsider, member, anonymous string
}

// isolationCases covers every root field of the schema. The test reads
// the schema by introspection and fails on a field missing here, so the
// matrix cannot go stale as fields are added.
var isolationCases = map[string]isolationCase{
	// Queries
	"Query.me":           {`{ me { id workspaces { edges { node { id name } } } } }`, nil, "", "", "UNAUTHENTICATED"},
	"Query.workspace":    {`query($w: ID!) { workspace(id: $w) { id name members { edges { node { user { email } } } } payments { edges { node { id } } } } }`, wsVar, "NOT_FOUND", "", "UNAUTHENTICATED"},
	"Query.plans":        {`{ plans { lookupKey } }`, nil, "PUBLIC", "PUBLIC", "PUBLIC"},
	"Query.price":        {`{ price(lookupKey: "starter_monthly") { priceId } }`, nil, "PUBLIC", "PUBLIC", "PUBLIC"},
	"Query.stripeConfig": {`{ stripeConfig { publishableKey } }`, nil, "PUBLIC", "PUBLIC", "PUBLIC"},
	"Query.previewPlanChange": {`query($w: ID!) { previewPlanChange(workspaceId: $w, lookupKey: "pro_yearly") { amountDue } }`,
		wsVar, "NOT_FOUND", "FORBIDDEN", "UNAUTHENTICATED"},
	"Query.webhookEvents": {`{ webhookEvents { totalCount } }`, nil, "FORBIDDEN", "FORBIDDEN", "UNAUTHENTICATED"},
	// Mutations
	"Mutation.createWorkspace": {`mutation { createWorkspace(input: {name: "mine"}) { id } }`, nil, "", "", "UNAUTHENTICATED"},
	"Mutation.addWorkspaceMember": {`mutation($w: ID!) { addWorkspaceMember(input: {workspaceId: $w, userId: "mallory"}) { id } }`,
		wsVar, "NOT_FOUND", "FORBIDDEN", "UNAUTHENTICATED"},
	"Mutation.inviteWorkspaceMember": {`mutation($w: ID!) { inviteWorkspaceMember(input: {workspaceId: $w, userId: "mallory"}) { id } }`,
		wsVar, "NOT_FOUND", "FORBIDDEN", "UNAUTHENTICATED"},
	"Mutation.acceptInvitation": {`mutation($i: ID!) { acceptInvitation(input: {invitationId: $i}) { id } }`,
		invitationVar, "NOT_FOUND", "NOT_FOUND", "UNAUTHENTICATED"},
	"Mutation.declineInvitation": {`mutation($i: ID!) { declineInvitation(input: {invitationId: $i}) { id } }`,
		invitationVar, "NOT_FOUND", "NOT_FOUND", "UNAUTHENTICATED"},
	"Mutation.revokeInvitation": {`mutation($i: ID!) { revokeInvitation(input: {invitationId: $i}) { id } }`,
		invitationVar, "NOT_FOUND", "NOT_FOUND", "UNAUTHENTICATED"},
	"Mutation.removeWorkspaceMember": {`mutation($w: ID!) { removeWorkspaceMember(input: {workspaceId: $w, userId: "alice"}) { userId } }`,
		wsVar, "NOT_FOUND", "FORBIDDEN", "UNAUTHENTICATED"},
	"Mutation.changeMemberRole": {`mutation($w: ID!) { changeMemberRole(input: {workspaceId: $w, userId: "alice", role: MEMBER}) { id } }`,
		wsVar, "NOT_FOUND", "FORBIDDEN", "UNAUTHENTICATED"},
	"Mutation.leaveWorkspace": {`mutation($w: ID!) { leaveWorkspace(input: {workspaceId: $w}) { userId } }`,
		wsVar, "NOT_FOUND", "", "UNAUTHENTICATED"},
	"Mutation.transferOwnership": {`mutation($w: ID!) { transferOwnership(input: {workspaceId: $w, userId: "carol"}) { id } }`,
		wsVar, "NOT_FOUND", "FORBIDDEN", "UNAUTHENTICATED"},
	"Mutation.renameWorkspace": {`mutation($w: ID!) { renameWorkspace(input: {workspaceId: $w, name: "taken"}) { id } }`,
		wsVar, "NOT_FOUND", "FORBIDDEN", "UNAUTHENTICATED"},
	"Mutation.deleteWorkspace": {`mutation($w: ID!) { deleteWorkspace(input: {workspaceId: $w}) { id } }`,
		wsVar, "NOT_FOUND", "FORBIDDEN", "UNAUTHENTICATED"},
	"Mutation.createProduct": {`mutation { createProduct(input: {name: "X", plan: "x"}) { id } }`, nil, "FORBIDDEN", "FORBIDDEN", "UNAUTHENTICATED"},
	"Mutation.createPrice": {`mutation { createPrice(input: {productId: "prod_x", unitAmount: 100, currency: "usd", lookupKey: "k"}) { priceId } }`,
		nil, "FORBIDDEN", "FORBIDDEN", "UNAUTHENTICATED"},
	"Mutation.createPaymentIntent": {`mutation($w: ID!) { createPaymentIntent(input: {workspaceId: $w, amount: 1000, currency: "usd", purpose: "p", idempotencyKey: "iso"}) { clientSecret } }`,
		wsVar, "NOT_FOUND", "FORBIDDEN", "UNAUTHENTICATED"},
	"Mutation.createCheckoutSession": {`mutation($w: ID!) { createCheckoutSession(input: {workspaceId: $w, lookupKey: "starter_monthly", mode: SUBSCRIPTION}) { checkoutUrl } }`,
		wsVar, "NOT_FOUND", "FORBIDDEN", "UNAUTHENTICATED"},
	"Mutation.syncCheckoutSession": {`mutation($s: String!) { syncCheckoutSession(sessionId: $s) { status } }`,
		func(w *paymentsWorld, _ string) map[string]any { return map[string]any{"s": w.sessionA} }, "NOT_FOUND", "", "UNAUTHENTICATED"},
	"Mutation.createSubscription": {`mutation($w: ID!) { createSubscription(input: {workspaceId: $w, lookupKey: "starter_monthly"}) { clientSecret } }`,
		wsVar, "NOT_FOUND", "FORBIDDEN", "UNAUTHENTICATED"},
	"Mutation.changeSubscriptionPlan": {`mutation($w: ID!) { changeSubscriptionPlan(input: {workspaceId: $w, lookupKey: "pro_yearly"}) { status } }`,
		wsVar, "NOT_FOUND", "FORBIDDEN", "UNAUTHENTICATED"},
	"Mutation.cancelSubscription": {`mutation($w: ID!) { cancelSubscription(input: {workspaceId: $w}) { status } }`,
		wsVar, "NOT_FOUND", "FORBIDDEN", "UNAUTHENTICATED"},
	"Mutation.resumeSubscription": {`mutation($w: ID!) { resumeSubscription(input: {workspaceId: $w}) { status } }`,
		wsVar, "NOT_FOUND", "FORBIDDEN", "UNAUTHENTICATED"},
	"Mutation.refundPayment": {`mutation($p: ID!) { refundPayment(input: {paymentId: $p, reason: DUPLICATE, idempotencyKey: "iso"}) { id } }`,
		func(_ *paymentsWorld, p string) map[string]any { return map[string]any{"p": p} }, "FORBIDDEN", "FORBIDDEN", "UNAUTHENTICATED"},
	"Mutation.replayWebhookEvent": {`mutation { replayWebhookEvent(id: "6f1f5f0e-1111-4a4a-9999-0123456789ab") { id } }`, nil, "FORBIDDEN", "FORBIDDEN", "UNAUTHENTICATED"},
	"Mutation.createBillingPortalSession": {`mutation($w: ID!) { createBillingPortalSession(workspaceId: $w) }`,
		wsVar, "NOT_FOUND", "FORBIDDEN", "UNAUTHENTICATED"},
	"Mutation.createSetupIntent": {`mutation($w: ID!) { createSetupIntent(workspaceId: $w, idempotencyKey: "iso") { clientSecret } }`,
		wsVar, "NOT_FOUND", "FORBIDDEN", "UNAUTHENTICATED"},
	"Mutation.setDefaultPaymentMethod": {`mutation($w: ID!) { setDefaultPaymentMethod(workspaceId: $w, paymentMethodId: "pm_x") { id } }`,
		wsVar, "NOT_FOUND", "FORBIDDEN", "UNAUTHENTICATED"},
	"Mutation.detachPaymentMethod": {`mutation($w: ID!) { detachPaymentMethod(workspaceId: $w, paymentMethodId: "pm_x") { id } }`,
		wsVar, "NOT_FOUND", "FORBIDDEN", "UNAUTHENTICATED"},
	// Subscriptions are tried over a websocket below.
	"Subscription.billingEvents": {"", nil, "NOT_FOUND", "", "UNAUTHENTICATED"},
}

func wsVar(w *paymentsWorld, _ string) map[string]any { return map[string]any{"w": w.wsA} }

func invitationVar(w *paymentsWorld, _ string) map[string]any {
	return map[string]any{"i": w.invitationA}
}

// TestTenantIsolationOverTheWholeSchema calls every root field as a user
// of another workspace, as a member where an owner or admin is needed,
// and anonymously, and expects no data of workspace A and the right code.
func TestTenantIsolationOverTheWholeSchema(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), nil)
	t.Cleanup(w.fake.ClearRules)
	// Workspace A has data worth protecting: a paid payment, a checkout
	// session, and a recognisable name.
	admin := w.token(t, "root", true)
	paymentID := w.paidPayment(t, admin, "pi_isolation", 1500)
	var cs checkoutPayload
	w.gql(t, w.alice, createCheckoutMutation, checkoutIn(w.wsA, map[string]any{"idempotencyKey": "iso-cs"})).Decode(t, &cs)
	w.sessionA = cs.CreateCheckoutSession.SessionID
	var inv struct{ InviteWorkspaceMember struct{ ID string } }
	w.gql(t, w.alice, `mutation($w: ID!) { inviteWorkspaceMember(input: {workspaceId: $w, userId: "zoe"}) { id } }`,
		map[string]any{"w": w.wsA}).Decode(t, &inv)
	w.invitationA = inv.InviteWorkspaceMember.ID

	var schema struct {
		Schema struct {
			QueryType, MutationType, SubscriptionType struct{ Name string }
			Types                                     []struct {
				Name   string
				Fields []struct{ Name string }
			}
		} `json:"__schema"`
	}
	w.gql(t, w.alice, `{ __schema { queryType { name } mutationType { name } subscriptionType { name }
		types { name fields { name } } } }`, nil).Decode(t, &schema)
	roots := map[string]bool{schema.Schema.QueryType.Name: true, schema.Schema.MutationType.Name: true, schema.Schema.SubscriptionType.Name: true}
	var fields []string
	for _, typ := range schema.Schema.Types {
		if roots[typ.Name] {
			for _, f := range typ.Fields {
				fields = append(fields, typ.Name+"."+f.Name)
			}
		}
	}
	sort.Strings(fields)
	if len(fields) < 15 {
		t.Fatalf("introspection found only %d root fields: %v", len(fields), fields)
	}
	for _, field := range fields {
		tc, ok := isolationCases[field]
		if !ok {
			t.Errorf("root field %s has no isolation case: add one to isolationCases", field)
			continue
		}
		if strings.HasPrefix(field, "Subscription.") {
			continue
		}
		t.Run(field, func(t *testing.T) {
			var vars map[string]any
			if tc.vars != nil {
				vars = tc.vars(w, paymentID)
			}
			for _, caller := range []struct{ who, token, want string }{
				{"outsider", w.bob, tc.outsider}, {"member", w.carol, tc.member}, {"anonymous", "", tc.anonymous},
			} {
				if caller.want == "" {
					continue // this caller may use the field on their own terms
				}
				r := w.gql(t, caller.token, tc.query, vars)
				if caller.want == "PUBLIC" {
					if len(r.Errors) > 0 && r.Code() != "PAYMENT_PROVIDER_UNAVAILABLE" {
						t.Errorf("%s: a public field answered %s", caller.who, r.Raw)
					}
					continue
				}
				if r.Code() != caller.want {
					t.Errorf("%s: code = %q, want %q: %s", caller.who, r.Code(), caller.want, r.Raw)
				}
				for _, leak := range []string{w.wsA, paymentID, "alice@", w.sessionA, w.invitationA, `"name":"A"`} {
					if leak != "" && strings.Contains(r.Raw, leak) && !strings.Contains(fmt.Sprint(vars), leak) {
						t.Errorf("%s: response leaks %q: %s", caller.who, leak, r.Raw)
					}
				}
			}
		})
	}
	t.Run("Subscription.billingEvents", func(t *testing.T) {
		for _, caller := range []struct{ who, token, want string }{{"outsider", w.bob, "NOT_FOUND"}, {"anonymous", "", "UNAUTHENTICATED"}} {
			c := beDial(t, w.testServer, caller.token)
			c.subscribe(t, "1", w.wsA)
			c.expectRefused(t, "1", caller.want)
		}
	})
}
