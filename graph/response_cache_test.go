package graph

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"billingapi/auth"
	"billingapi/cache"
	"billingapi/graph/generated"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"
)

// TestPublicQuery: only queries whose every root field is public may be
// answered from the shared response cache; anything reading the viewer,
// a workspace, or hidden behind a fragment is executed each time.
func TestPublicQuery(t *testing.T) {
	for _, c := range []struct {
		query string
		want  bool
	}{
		{`{ plans { lookupKey } }`, true},
		{`query Q($k: String!) { price(lookupKey: $k) { unitAmount } stripeConfig { mode } }`, true},
		{`{ a: plans { lookupKey } b: plans { currency } }`, true},
		{`{ plans { lookupKey } me { id } }`, false},
		{`{ me { id } }`, false},
		{`{ __typename }`, false},
		{`{ plans { lookupKey } __typename }`, false},
		{`{ ...F } fragment F on Query { plans { lookupKey } }`, false},
		{`{ ... on Query { plans { lookupKey } } }`, false},
		{`mutation { createWorkspace(input: {name: "x"}) { id } }`, false},
		{`subscription { billingEvents(workspaceId: "x") { type } }`, false},
	} {
		doc, err := parser.ParseQuery(&ast.Source{Input: c.query})
		if err != nil {
			t.Fatalf("%s: %v", c.query, err)
		}
		if got := publicQuery(doc.Operations[0]); got != c.want {
			t.Errorf("publicQuery(%s) = %v, want %v", c.query, got, c.want)
		}
	}
	if publicQuery(nil) {
		t.Error("publicQuery(nil) = true")
	}
}

// TestWorkspaceQuery: only a query of one workspace that reads nothing
// but workspaceFields, with no fragment or directive, may be kept for its
// viewer; the workspace's id comes from the argument or its variable.
func TestWorkspaceQuery(t *testing.T) {
	schema := generated.NewExecutableSchema(generated.Config{}).Schema()
	const id = "6f1c2a3e-1d2b-4c5d-8e9f-0a1b2c3d4e5f"
	for _, c := range []struct {
		query string
		vars  map[string]any
		want  bool
	}{
		{`query($id: ID!) { workspace(id: $id) { access { level } subscription { status } } }`, map[string]any{"id": id}, true},
		{`{ workspace(id: "` + id + `") { __typename id name createTime viewerRole access { level warning features } } }`, nil, true},
		{`query($id: ID!) { w: workspace(id: $id) { subscription { id stripeSubscriptionId status plan lookupKey quantity
			currentPeriodStart currentPeriodEnd cancelAtPeriodEnd canceledAt trialEnd discount { code percentOff amountOff } } } }`,
			map[string]any{"id": id}, true},
		// Fields read from other tables, which the workspace's group does not cover.
		{`query($id: ID!) { workspace(id: $id) { access { level } payments { totalCount } } }`, map[string]any{"id": id}, false},
		{`query($id: ID!) { workspace(id: $id) { members { totalCount } } }`, map[string]any{"id": id}, false},
		// More than the workspace, or not a query.
		{`query($id: ID!) { workspace(id: $id) { id } me { id } }`, map[string]any{"id": id}, false},
		{`query($id: ID!) { a: workspace(id: $id) { id } b: workspace(id: $id) { name } }`, map[string]any{"id": id}, false},
		{`{ me { id } }`, nil, false},
		{`subscription($id: ID!) { billingEvents(workspaceId: $id) { type } }`, map[string]any{"id": id}, false},
		// Fragments and directives hide what is read.
		{`query($id: ID!) { workspace(id: $id) { ...F } } fragment F on Workspace { id }`, map[string]any{"id": id}, false},
		{`query($id: ID!) { workspace(id: $id) { ... on Workspace { id } } }`, map[string]any{"id": id}, false},
		{`query($id: ID!, $x: Boolean!) { workspace(id: $id) { id name @include(if: $x) } }`, map[string]any{"id": id, "x": true}, false},
		{`{ __typename workspace(id: "` + id + `") { id } }`, nil, false},
		// An id that names no workspace is answered (NOT_FOUND), never kept.
		{`query($id: ID!) { workspace(id: $id) { id } }`, map[string]any{"id": "not-a-uuid"}, false},
		{`{ workspace(id: 5) { id } }`, nil, false},
		{`query($id: ID!) { workspace(id: $id) { id } }`, map[string]any{"id": nil}, false},
		{`query($id: ID!) { workspace(id: $id) { id } }`, nil, false},
		// The operation chosen by name is the one judged.
		{`query A($id: ID!) { workspace(id: $id) { id } } query B { me { id } }`, map[string]any{"id": id, "op": "A"}, true},
		{`query A($id: ID!) { workspace(id: $id) { id } } query B { me { id } }`, map[string]any{"id": id, "op": "B"}, false},
	} {
		doc, errs := gqlparser.LoadQueryWithRules(schema, c.query, nil) // nil: the default rules
		if errs != nil {
			t.Fatalf("%s: %v", c.query, errs)
		}
		op := doc.Operations[0]
		if name, ok := c.vars["op"].(string); ok {
			op = doc.Operations.ForName(name)
		}
		got, ok := workspaceQuery(op, c.vars)
		if ok != c.want || (ok && got.String() != id) {
			t.Errorf("workspaceQuery(%s) = %v, %v; want %v", c.query, got, ok, c.want)
		}
	}
	if _, ok := workspaceQuery(nil, nil); ok {
		t.Error("workspaceQuery(nil) = true")
	}
}

// TestCacheScopeKeepsAUsersAnswerForThatUser: a workspace answer is kept
// only for a regular signed-in user, under a key of their own; public
// answers are everyone's.
func TestCacheScopeKeepsAUsersAnswerForThatUser(t *testing.T) {
	schema := generated.NewExecutableSchema(generated.Config{}).Schema()
	const id = "6f1c2a3e-1d2b-4c5d-8e9f-0a1b2c3d4e5f"
	opContext := func(query string) *graphql.OperationContext {
		doc, errs := gqlparser.LoadQueryWithRules(schema, query, nil) // nil: the default rules
		if errs != nil {
			t.Fatal(errs)
		}
		return &graphql.OperationContext{RawQuery: query, Doc: doc, Operation: doc.Operations[0], Variables: map[string]any{"id": id}}
	}
	entitlement := opContext(`query($id: ID!) { workspace(id: $id) { access { level } } }`)
	for _, c := range []struct {
		name   string
		viewer *auth.Viewer
		owner  string
		ok     bool
	}{
		{"user", &auth.Viewer{UserID: "carol"}, "carol", true},
		{"anonymous", nil, "", false},
		{"no user", &auth.Viewer{}, "", false},
		{"admin", &auth.Viewer{UserID: "root", Admin: true}, "", false},
		{"service", &auth.Viewer{UserID: "x", Service: auth.WebhooksService}, "", false},
	} {
		ctx := context.Background()
		if c.viewer != nil {
			ctx = auth.NewContext(ctx, *c.viewer)
		}
		scope, group, owner, ok := cacheScope(ctx, entitlement)
		if ok != c.ok || owner != c.owner || (ok && (scope != ScopeWorkspace || group != cache.WorkspaceGroup(id))) {
			t.Errorf("%s: scope %q group %q owner %q ok %v", c.name, scope, group, owner, ok)
		}
	}
	carol, _ := responseKey(entitlement, "carol")
	dave, _ := responseKey(entitlement, "dave")
	if carol == dave {
		t.Error("two users' answers share a key")
	}
	// Parts are not run together: an owner ending where a query begins
	// does not make the same key as another split of the same bytes, even
	// when a part holds the byte a separator would be (these two collided
	// when parts were joined with NUL).
	a, _ := responseKey(&graphql.OperationContext{RawQuery: "b{x}"}, "a")
	b, _ := responseKey(&graphql.OperationContext{RawQuery: "{x}"}, "ab")
	if a == b {
		t.Error(`owner "a" with query "b{x}" has the key of owner "ab" with query "{x}"`)
	}
	nulOwner, _ := responseKey(&graphql.OperationContext{RawQuery: "c"}, "a\x00b")
	nulQuery, _ := responseKey(&graphql.OperationContext{RawQuery: "b\x00c"}, "a")
	if nulOwner == nulQuery {
		t.Error(`owner "a\x00b" with query "c" has the key of owner "a" with query "b\x00c"`)
	}
	plans := opContext(`{ plans { lookupKey } }`)
	scope, group, owner, ok := cacheScope(auth.NewContext(context.Background(), auth.Viewer{UserID: "carol"}), plans)
	if !ok || scope != ScopePublic || group != cache.PricesGroup || owner != "" {
		t.Errorf("plans: scope %q group %q owner %q ok %v", scope, group, owner, ok)
	}
}

// reviewedWorkspaceResolvers are the workspaceFields that run code of ours
// rather than copy a value. Each was read for what it reads, since an
// answer built from them is kept until the workspace's near-cache group is
// dropped:
//   - Query.workspace reads the workspace's row (billing.VisibleWorkspace),
//     Workspace.viewerRole the viewer's membership: every write of either
//     drops the group (billing/near.go invalidateOnWrite);
//   - Workspace.access and Workspace.subscription read the billing status
//     snapshot, which refreshStatus replaces and then drops the group;
//   - the others turn the snapshot's own values into their GraphQL form.
var reviewedWorkspaceResolvers = []string{
	"Access.level", "Access.warning",
	"BillingSubscription.status",
	"Discount.amountOff", "Discount.code", "Discount.percentOff",
	"Query.workspace",
	"Workspace.access", "Workspace.subscription", "Workspace.viewerRole",
}

// TestWorkspaceFieldsAreDroppedWithTheirGroup fails when a field in
// workspaceFields is not in the schema, has a directive it was not
// reviewed with, or runs code of ours that is not in
// reviewedWorkspaceResolvers (read from gqlgen's generated field
// contexts). It cannot see a reviewed resolver's body change.
func TestWorkspaceFieldsAreDroppedWithTheirGroup(t *testing.T) {
	schema := generated.NewExecutableSchema(generated.Config{}).Schema()
	runsCode := generatedFieldContexts(t)
	var found []string
	for name := range workspaceFields {
		typ, field, _ := strings.Cut(name, ".")
		def := schema.Types[typ]
		if def == nil || def.Kind != ast.Object || def.Fields.ForName(field) == nil {
			t.Errorf("%s is not a field of an object type in the schema", name)
			continue
		}
		f := def.Fields.ForName(field)
		for _, d := range append(slices.Clone(def.Directives), f.Directives...) {
			// @authenticated: the cache keeps answers for signed-in users only.
			if d.Name != "deprecated" && !(name == "Query.workspace" && d.Name == "authenticated") {
				t.Errorf("%s has directive @%s: may a kept answer skip it?", name, d.Name)
			}
		}
		if code, ok := runsCode[name]; !ok {
			t.Errorf("no generated field context for %s", name)
		} else if code {
			found = append(found, name)
		}
	}
	sort.Strings(found)
	if !slices.Equal(found, reviewedWorkspaceResolvers) {
		t.Errorf("workspace fields that run code:\n  %v\nreviewed:\n  %v\nread each new one for whether every change to what it reads drops the workspace's group, then update reviewedWorkspaceResolvers", found, reviewedWorkspaceResolvers)
	}
}

// TestResponseCacheKeeps: complete, small answers are kept, and nothing
// else; a kept answer lives no longer than the near-cache entries it was
// built from.
func TestResponseCacheKeeps(t *testing.T) {
	rdb, closeFn, err := cache.Open("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeFn() })
	near := cache.NewNear(rdb, "rc:", time.Minute, nil)
	near.Start(context.Background())
	t.Cleanup(near.Close)
	for deadline := time.Now().Add(5 * time.Second); !near.Enabled(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the near cache did not turn on")
		}
	}
	rc := ResponseCache{Near: near, MaxAnswerBytes: 100}

	query := 0 // each case its own query text, so its own key
	// run sends the same public query twice through rc, answered by
	// answer, and reports how many times it was executed.
	run := func(t *testing.T, answer func(ctx context.Context) *graphql.Response) int {
		t.Helper()
		query++
		text := fmt.Sprintf("{ plans { lookupKey } } # %d", query)
		doc, err := parser.ParseQuery(&ast.Source{Input: text})
		if err != nil {
			t.Fatal(err)
		}
		executed := 0
		next := func(ctx context.Context) graphql.ResponseHandler {
			executed++
			return graphql.OneShot(answer(ctx))
		}
		for range 2 {
			oc := &graphql.OperationContext{RawQuery: text, Doc: doc, Operation: doc.Operations[0]}
			ctx := graphql.WithOperationContext(context.Background(), oc)
			if res := rc.InterceptOperation(ctx, next)(ctx); res == nil || len(res.Data) == 0 {
				t.Fatalf("no answer: %+v", res)
			}
		}
		return executed
	}
	data := func(n int) json.RawMessage { return json.RawMessage(`"` + strings.Repeat("x", n-2) + `"`) }

	if n := run(t, func(context.Context) *graphql.Response { return &graphql.Response{Data: data(100)} }); n != 1 {
		t.Errorf("an answer of 100 bytes (the limit) was executed %d times, want 1", n)
	}
	if n := run(t, func(context.Context) *graphql.Response { return &graphql.Response{Data: data(101)} }); n != 2 {
		t.Errorf("an answer over the limit was executed %d times, want 2 (not kept)", n)
	}
	if n := run(t, func(context.Context) *graphql.Response {
		return &graphql.Response{Data: data(10), Errors: gqlerror.List{{Message: "partial"}}}
	}); n != 2 {
		t.Errorf("an answer with errors was executed %d times, want 2 (not kept)", n)
	}
	if n := run(t, func(ctx context.Context) *graphql.Response {
		cache.SkipFill(ctx) // read a value Redis did not hold
		return &graphql.Response{Data: data(10)}
	}); n != 2 {
		t.Errorf("an answer built from a value not to keep was executed %d times, want 2", n)
	}

	// An answer built from an entry that expires in a second expires with
	// it, although the near cache's TTL is a minute.
	_, _, ticket := near.Get(cache.PricesGroup, "catalog")
	expires := time.Now().Add(time.Second)
	near.FillUntil(cache.PricesGroup, "catalog", 1, ticket, expires)
	executed := 0
	query++
	text := fmt.Sprintf("{ plans { lookupKey } } # %d", query)
	doc, _ := parser.ParseQuery(&ast.Source{Input: text})
	ask := func() {
		oc := &graphql.OperationContext{RawQuery: text, Doc: doc, Operation: doc.Operations[0]}
		ctx := graphql.WithOperationContext(context.Background(), oc)
		rc.InterceptOperation(ctx, func(ctx context.Context) graphql.ResponseHandler {
			executed++
			_, _, _ = cache.GetOrLoad(ctx, near, cache.PricesGroup, "catalog", func(v int) int { return v },
				func() (int, bool, error) { return 2, false, nil })
			return graphql.OneShot(&graphql.Response{Data: data(10)})
		})(ctx)
	}
	ask()
	ask()
	if executed != 1 {
		t.Fatalf("an answer built from a fresh entry was executed %d times, want 1", executed)
	}
	time.Sleep(time.Until(expires) + 20*time.Millisecond)
	ask()
	if executed != 2 {
		t.Errorf("an answer outlived the entry it was built from: executed %d times, want 2", executed)
	}
}
