package graph

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"slices"
	"sync"

	"billingapi/auth"
	"billingapi/cache"

	"github.com/99designs/gqlgen/graphql"
	"github.com/google/uuid"
	"github.com/vektah/gqlparser/v2/ast"
)

// ResponseCache answers a repeated query with the response the first one
// got, without executing it again. It keeps two kinds of answer, both in
// the near cache (cache.Near), so that whatever drops the data an answer
// was built from drops the answer too, on every replica:
//
//   - public: a query whose root fields are all public (the plan catalog,
//     the Stripe configuration) is the same for every caller, signed in or
//     not. Its answer lives in the catalog group, which every price or
//     product change drops.
//   - workspace: a signed-in user's entitlement check, `workspace(id)`
//     reading only the workspace's own fields, the user's role in it and
//     its billing status (workspaceFields). Its answer is kept for that
//     user alone, in the workspace's group, which every write of the
//     workspace or of a membership and every status change drops
//     (billing/near.go).
//
// Only complete answers are kept: none with errors, none larger than
// MaxAnswerBytes, and none built from values that the near cache itself
// would not keep (cache.SkipFill). An answer expires with the near cache's
// TTL, and no later than the first near-cache entry it was built from
// (cache.FillUntil), so that a lost invalidation leaves it stale for one
// TTL at most. What answers take counts against the near cache's memory
// budget (Near.MaxBytes).
type ResponseCache struct {
	Near *cache.Near
	// MaxAnswerBytes is the largest answer kept (default
	// DefaultMaxAnswerBytes): an entitlement check or the plan catalog is
	// a few hundred bytes, and a query with hundreds of aliases should not
	// take the room of a thousand of them.
	MaxAnswerBytes int
	// Observe, when set, is told whether each cacheable query was a hit,
	// and of which scope ("public" or "workspace").
	Observe func(scope string, hit bool)
}

// DefaultMaxAnswerBytes is ResponseCache.MaxAnswerBytes's default.
const DefaultMaxAnswerBytes = 8 << 10

// The scopes of ResponseCache, as Observe is told them.
const (
	ScopePublic    = "public"
	ScopeWorkspace = "workspace"
)

var _ interface {
	graphql.HandlerExtension
	graphql.OperationInterceptor
} = ResponseCache{}

// ExtensionName implements graphql.HandlerExtension.
func (ResponseCache) ExtensionName() string { return "ResponseCache" }

// Validate implements graphql.HandlerExtension.
func (ResponseCache) Validate(graphql.ExecutableSchema) error { return nil }

// InterceptOperation implements graphql.OperationInterceptor. It works on
// the operation, not on each response: a transport that asks for responses
// until there are none (a websocket) gets the cached one once.
func (c ResponseCache) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	if c.Near == nil || !graphql.HasOperationContext(ctx) {
		return next(ctx)
	}
	oc := graphql.GetOperationContext(ctx)
	scope, group, owner, ok := cacheScope(ctx, oc)
	if !ok {
		return next(ctx)
	}
	key, ok := responseKey(oc, owner)
	if !ok {
		return next(ctx)
	}
	v, hit, ticket := c.Near.Get(group, key)
	c.observe(scope, hit)
	if hit {
		return graphql.OneShot(&graphql.Response{Data: v.(json.RawMessage)})
	}
	ctx, kept := cache.WithFillHint(ctx)
	handler := next(ctx)
	var first sync.Once
	return func(ctx context.Context) *graphql.Response {
		res := handler(ctx)
		first.Do(func() {
			if res == nil || len(res.Errors) > 0 || len(res.Data) == 0 || len(res.Extensions) > 0 || len(res.Data) > c.maxAnswer() {
				return
			}
			if keep, until := kept(); keep {
				c.Near.FillUntil(group, key, slices.Clone(res.Data), ticket, until)
			}
		})
		return res
	}
}

func (c ResponseCache) maxAnswer() int {
	if c.MaxAnswerBytes > 0 {
		return c.MaxAnswerBytes
	}
	return DefaultMaxAnswerBytes
}

func (c ResponseCache) observe(scope string, hit bool) {
	if c.Observe != nil {
		c.Observe(scope, hit)
	}
}

// cacheScope says whether op's answer may be kept, and where: its scope,
// the near-cache group, and whose answer it is ("" for everyone).
func cacheScope(ctx context.Context, oc *graphql.OperationContext) (scope, group, owner string, ok bool) {
	if publicQuery(oc.Operation) {
		return ScopePublic, cache.PricesGroup, "", true
	}
	if ws, ok := workspaceQuery(oc.Operation, oc.Variables); ok {
		v, signedIn := auth.FromContext(ctx)
		// A regular user only: an admin's or a service's answer is not
		// theirs alone to keep, and nothing else may skip @authenticated.
		if !signedIn || !v.RegularUser() {
			return "", "", "", false
		}
		return ScopeWorkspace, cache.WorkspaceGroup(ws.String()), v.UserID, true
	}
	return "", "", "", false
}

// publicFields are the root fields whose answer is the same for every
// caller, signed in or not: the plan catalog and the Stripe configuration.
var publicFields = []string{"plans", "price", "stripeConfig"}

// publicQuery reports whether op is a query whose root selections are all
// plain public fields (no fragments at the root, so that what is read is
// plain to see).
func publicQuery(op *ast.OperationDefinition) bool {
	if op == nil || op.Operation != ast.Query || len(op.SelectionSet) == 0 {
		return false
	}
	for _, sel := range op.SelectionSet {
		f, ok := sel.(*ast.Field)
		if !ok || !slices.Contains(publicFields, f.Name) {
			return false
		}
	}
	return true
}

// workspaceFields are the fields a cached workspace answer may read: each
// is read from the workspace's row, the viewer's membership or the
// workspace's billing status snapshot, whose every change drops the
// workspace's near-cache group. TestWorkspaceFieldsAreDroppedWithTheirGroup
// fails when one of them gains a directive or starts running code that is
// not on its reviewed list.
var workspaceFields = map[string]bool{
	"Query.workspace": true,

	"Workspace.id": true, "Workspace.name": true, "Workspace.createTime": true,
	"Workspace.viewerRole": true, "Workspace.access": true, "Workspace.subscription": true,

	"Access.level": true, "Access.warning": true, "Access.features": true,

	"BillingSubscription.id": true, "BillingSubscription.stripeSubscriptionId": true,
	"BillingSubscription.status": true, "BillingSubscription.plan": true,
	"BillingSubscription.lookupKey": true, "BillingSubscription.quantity": true,
	"BillingSubscription.currentPeriodStart": true, "BillingSubscription.currentPeriodEnd": true,
	"BillingSubscription.cancelAtPeriodEnd": true, "BillingSubscription.canceledAt": true,
	"BillingSubscription.trialEnd": true, "BillingSubscription.discount": true,

	"Discount.code": true, "Discount.percentOff": true, "Discount.amountOff": true,
}

// workspaceQuery reports whether op is a query of one workspace(id) that
// reads only workspaceFields, with no fragments or directives (so that
// what is read is plain to see), and returns the workspace's id. op must
// have been validated: each field then knows its parent type.
func workspaceQuery(op *ast.OperationDefinition, vars map[string]any) (uuid.UUID, bool) {
	if op == nil || op.Operation != ast.Query || len(op.SelectionSet) != 1 {
		return uuid.Nil, false
	}
	root, ok := op.SelectionSet[0].(*ast.Field)
	if !ok || root.Name != "workspace" || !onlyWorkspaceFields(ast.SelectionSet{root}) {
		return uuid.Nil, false
	}
	arg := root.Arguments.ForName("id")
	if arg == nil || arg.Value == nil {
		return uuid.Nil, false
	}
	raw, err := arg.Value.Value(vars)
	s, isString := raw.(string)
	if err != nil || !isString {
		return uuid.Nil, false
	}
	id, err := uuid.Parse(s)
	return id, err == nil
}

func onlyWorkspaceFields(set ast.SelectionSet) bool {
	for _, sel := range set {
		f, ok := sel.(*ast.Field)
		if !ok || len(f.Directives) > 0 {
			return false
		}
		if f.Name == "__typename" {
			continue
		}
		if f.ObjectDefinition == nil || !workspaceFields[f.ObjectDefinition.Name+"."+f.Name] ||
			!onlyWorkspaceFields(f.SelectionSet) {
			return false
		}
	}
	return true
}

// responseKey identifies a response by its owner ("" when it is everyone's),
// the query's text, the operation chosen and the variables. Each part is
// hashed after its length, so that no two lists of parts hash the same
// bytes.
func responseKey(oc *graphql.OperationContext, owner string) (string, bool) {
	vars, err := json.Marshal(oc.Variables) // map keys come out sorted
	if err != nil {
		return "", false
	}
	h := sha256.New()
	for _, part := range []string{owner, oc.RawQuery, oc.OperationName, string(vars)} {
		h.Write(binary.AppendUvarint(nil, uint64(len(part))))
		h.Write([]byte(part))
	}
	return "response:" + hex.EncodeToString(h.Sum(nil)), true
}
