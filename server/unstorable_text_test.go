package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"billingapi/graph/generated"
	"billingapi/internal/testenv"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/vektah/gqlparser/v2/ast"
)

// expectBadText fails unless r is one BAD_USER_INPUT error naming field
// (any field when field is "").
func expectBadText(t *testing.T, r gqlResponse, field string) {
	t.Helper()
	if r.Code() != "BAD_USER_INPUT" || len(r.Errors) != 1 {
		t.Fatalf("got %s, want one BAD_USER_INPUT", r.Raw)
	}
	if got, _ := r.Errors[0].Extensions["field"].(string); field != "" && got != field {
		t.Fatalf("extensions.field = %q, want %q: %s", got, field, r.Raw)
	}
}

// TestUnstorableTextIsBadInputEndToEnd sends text the database cannot
// store to queries and mutations of a server on each database (on
// PostgreSQL each of them answered INTERNAL before): the answer is
// BAD_USER_INPUT naming the field, and nothing is stored.
func TestUnstorableTextIsBadInputEndToEnd(t *testing.T) {
	for _, backend := range testenv.Databases() {
		t.Run(backend.Name, func(t *testing.T) {
			s := startServer(t, backend.URL(t), nil)
			alice, root := s.token(t, "alice", false), s.token(t, "root", true)
			ws := s.createWorkspace(t, alice, "Alice Inc")

			for _, c := range []struct {
				name, token, query string
				vars               map[string]any
				field              string
			}{
				{"WorkspaceNameInVariable", alice, `mutation($n: String!) { createWorkspace(input: {name: $n}) { id } }`,
					map[string]any{"n": "Acme\x00 Inc"}, "name"},
				{"WorkspaceNameEscapedInQuery", alice, `mutation { createWorkspace(input: {name: "Acme\u0000"}) { id } }`, nil, "name"},
				{"WorkspaceNameOfNULOnly", alice, `mutation($i: CreateWorkspaceInput!) { createWorkspace(input: $i) { id } }`,
					map[string]any{"i": map[string]any{"name": "\x00"}}, "name"},
				{"MemberUserIDInVariable", alice, `mutation($w: ID!, $u: ID!) { addWorkspaceMember(input: {workspaceId: $w, userId: $u, role: MEMBER}) { id } }`,
					map[string]any{"w": ws, "u": "bob\x00"}, "userId"},
				{"MemberUserIDEscapedInQuery", alice, `mutation { addWorkspaceMember(input: {workspaceId: "` + ws + `", userId: "\u0000bob", role: ADMIN}) { id } }`, nil, "userId"},
				{"FeatureInAListInAnInput", root, `mutation { createProduct(input: {name: "Pro", plan: "pro", features: ["seats", "sso\u0000"]}) { id } }`, nil, "features"},
				{"ReasonDetailOfARefund", root, `mutation($p: ID!, $d: String) { refundPayment(input: {paymentId: $p, reason: DUPLICATE, reasonDetail: $d, idempotencyKey: "k1"}) { id } }`,
					map[string]any{"p": uuid.NewString(), "d": "twice\x00"}, "reasonDetail"},
				{"IdempotencyKeyArgument", alice, `mutation($w: ID!, $k: String!) { createSetupIntent(workspaceId: $w, idempotencyKey: $k) { setupIntentId } }`,
					map[string]any{"w": ws, "k": "k\x00"}, "idempotencyKey"},
				{"QueryFilter", root, `query($t: String) { webhookEvents(type: $t) { totalCount } }`,
					map[string]any{"t": "payment_intent.succeeded\x00"}, "type"},
				// A cursor is decoded by its scalar before the field runs,
				// which refuses anything it did not write.
				{"CursorOfANestedField", alice, `{ me { workspaces(after: "\u0000") { totalCount } } }`, nil, "cursor"},
				// Not NUL, but as unstorable: more bytes than the column holds.
				{"WorkspaceNameOfTooManyBytes", alice, `mutation($n: String!) { createWorkspace(input: {name: $n}) { id } }`,
					map[string]any{"n": strings.Repeat("é", 60)}, "name"},
			} {
				t.Run(c.name, func(t *testing.T) {
					expectBadText(t, s.gql(t, c.token, c.query, c.vars), c.field)
				})
			}

			t.Run("InvalidUTF8InAGetQuery", func(t *testing.T) {
				q := url.Values{"query": {"{ webhookEvents(type: \"payment\xff\") { totalCount } }"}}
				req, _ := http.NewRequest(http.MethodGet, s.URL+"/graphql?"+q.Encode(), nil)
				req.Header.Set("Authorization", "Bearer "+root)
				r := s.do(t, req)
				expectBadText(t, r, "type")
				if !strings.Contains(r.Errors[0].Message, "UTF-8") {
					t.Errorf("message %q does not say why", r.Errors[0].Message)
				}
			})

			t.Run("NothingWasStored", func(t *testing.T) {
				var out struct {
					Me struct {
						Workspaces struct{ TotalCount int } `json:"workspaces"`
					} `json:"me"`
					Workspace struct {
						Members struct{ TotalCount int } `json:"members"`
					} `json:"workspace"`
				}
				s.gql(t, alice, `query($w: ID!) { me { workspaces { totalCount } } workspace(id: $w) { members { totalCount } } }`,
					map[string]any{"w": ws}).Decode(t, &out)
				if out.Me.Workspaces.TotalCount != 1 || out.Workspace.Members.TotalCount != 1 {
					t.Errorf("alice has %d workspaces and hers %d members, want 1 and 1", out.Me.Workspaces.TotalCount, out.Workspace.Members.TotalCount)
				}
			})

			t.Run("SubscriptionArgumentOverWebsocket", func(t *testing.T) {
				bc := beDial(t, s, alice)
				wsSend(t, bc.c, map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{
					"query": `subscription { billingEvents(workspaceId: "\u0000") { eventId } }`,
				}})
				bc.expectRefused(t, "1", "BAD_USER_INPUT")
				bc.subscribe(t, "2", ws+"\x00")
				bc.expectRefused(t, "2", "BAD_USER_INPUT")
			})
		})
	}
}

// signClaims signs claims as the server's identity provider would, with
// whatever they hold (Mint refuses a sub the server would refuse).
func signClaims(t *testing.T, s *testServer, claims jwt.MapClaims) string {
	t.Helper()
	now := time.Now()
	c := jwt.MapClaims{"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	if s.Config.JWT.Issuer != "" {
		c["iss"] = s.Config.JWT.Issuer
	}
	if s.Config.JWT.Audience != "" {
		c["aud"] = s.Config.JWT.Audience
	}
	for k, v := range claims {
		c[k] = v
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(s.Config.JWT.HS256Secret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestTokenClaimsThatCannotBeStored: a sub that cannot be a user id is
// refused at the door (UNAUTHENTICATED, saying why), over HTTP and on the
// websocket; a name or email the database cannot store is left out and
// the user works as usual; a long name or email is cut to what its column
// holds.
func TestTokenClaimsThatCannotBeStored(t *testing.T) {
	for _, backend := range testenv.Databases() {
		t.Run(backend.Name, func(t *testing.T) {
			s := startServer(t, backend.URL(t), nil)

			for _, c := range []struct{ name, sub string }{
				{"NULInSub", "alice\x00"},
				{"SubOfNULOnly", "\x00"},
				{"SubOfSpaces", "   "},
				{"SubOfTooManyBytes", strings.Repeat("é", 128)},
			} {
				t.Run(c.name, func(t *testing.T) {
					tok := signClaims(t, s, jwt.MapClaims{"sub": c.sub, "name": "Alice"})
					r := s.gql(t, tok, `{ me { id } }`, nil)
					if r.Status != http.StatusUnauthorized || r.Code() != "UNAUTHENTICATED" {
						t.Fatalf("got %d %s, want 401 UNAUTHENTICATED", r.Status, r.Raw)
					}
					if !strings.Contains(r.Errors[0].Message, "sub") {
						t.Errorf("message %q does not say the sub is the problem", r.Errors[0].Message)
					}
					c := wsDial(t, s, "graphql-transport-ws", nil)
					wsSend(t, c, map[string]any{"type": "connection_init", "payload": wsInitPayload(tok)})
					if code := wsExpectClosed(t, c); code != 4403 {
						t.Errorf("websocket closed with %d, want 4403", code)
					}
				})
			}

			type me struct {
				ID, Name, Email string
			}
			meOf := func(t *testing.T, tok string) me {
				t.Helper()
				var out struct{ Me me }
				s.gql(t, tok, `{ me { id name email } }`, nil).Decode(t, &out)
				return out.Me
			}
			for _, c := range []struct {
				name        string
				claims      jwt.MapClaims
				want        me
				createsWork bool
			}{
				{"NULInNameIsLeftOut", jwt.MapClaims{"sub": "carol", "name": "Carol\x00", "email": "carol@example.com"},
					me{"carol", "", "carol@example.com"}, true},
				{"NULInEmailIsLeftOut", jwt.MapClaims{"sub": "dave", "name": "Dave", "email": "victim@example.com\x00"},
					me{"dave", "Dave", ""}, true},
				{"LongNameIsCutToItsColumn", jwt.MapClaims{"sub": "erin", "name": strings.Repeat("é", 150)},
					me{"erin", strings.Repeat("é", 100), ""}, false},
				{"LongEmailIsCutToItsColumn", jwt.MapClaims{"sub": "frank", "email": strings.Repeat("é", 161) + "@example.com"},
					me{"frank", "", strings.Repeat("é", 160)}, false},
			} {
				t.Run(c.name, func(t *testing.T) {
					tok := signClaims(t, s, c.claims)
					if got := meOf(t, tok); got != c.want {
						t.Fatalf("me = %+v, want %+v", got, c.want)
					}
					if c.createsWork {
						// The user can work, and stays as they were.
						s.createWorkspace(t, tok, "Work")
						if got := meOf(t, tok); got != c.want {
							t.Fatalf("me = %+v after a mutation, want %+v", got, c.want)
						}
					}
				})
			}
		})
	}
}

// textLeaf is one place in a root field's arguments where a client writes
// text: a String, an ID or a custom scalar, at the top of an argument or
// inside input objects and lists.
type textLeaf struct {
	op     ast.Operation
	field  *ast.FieldDefinition
	path   []string // the argument, then input field names
	scalar string
}

// name is the leaf as extensions.field names it.
func (l textLeaf) name() string {
	p := l.path
	if len(p) > 1 && p[0] == "input" {
		p = p[1:]
	}
	return strings.Join(p, ".")
}

// textLeaves lists every text leaf of every root field of the schema, so
// that fields added later are tried without a change here.
func textLeaves(schema *ast.Schema) []textLeaf {
	var leaves []textLeaf
	var walk func(op ast.Operation, f *ast.FieldDefinition, t *ast.Type, path []string)
	walk = func(op ast.Operation, f *ast.FieldDefinition, t *ast.Type, path []string) {
		def := schema.Types[t.Name()]
		switch {
		case def == nil || len(path) > 6: // a recursive input type, tried deep enough
		case def.Kind == ast.Scalar && def.Name != "Int" && def.Name != "Float" && def.Name != "Boolean":
			leaves = append(leaves, textLeaf{op, f, slices.Clone(path), def.Name})
		case def.Kind == ast.InputObject:
			for _, in := range def.Fields {
				walk(op, f, in.Type, append(path, in.Name))
			}
		}
	}
	for _, root := range []struct {
		op  ast.Operation
		def *ast.Definition
	}{{ast.Query, schema.Query}, {ast.Mutation, schema.Mutation}, {ast.Subscription, schema.Subscription}} {
		if root.def == nil {
			continue
		}
		for _, f := range root.def.Fields {
			if strings.HasPrefix(f.Name, "__") {
				continue
			}
			for _, a := range f.Arguments {
				walk(root.op, f, a.Type, []string{a.Name})
			}
		}
	}
	return leaves
}

// textOperation returns an operation calling l's field with text at l,
// every required argument and input field filled with a plausible value,
// and its variables.
func textOperation(schema *ast.Schema, l textLeaf, text, workspaceID string) (string, map[string]any) {
	var fill func(t *ast.Type, name string, rest []string, onPath bool) any
	fill = func(t *ast.Type, name string, rest []string, onPath bool) any {
		if t.Elem != nil {
			return []any{fill(t.Elem, name, rest, onPath)}
		}
		def := schema.Types[t.NamedType]
		switch {
		case onPath && len(rest) == 0:
			return text
		case def.Kind == ast.Enum:
			return def.EnumValues[0].Name
		case def.Kind == ast.InputObject:
			m := map[string]any{}
			for _, in := range def.Fields {
				switch {
				case onPath && rest[0] == in.Name:
					m[in.Name] = fill(in.Type, in.Name, rest[1:], true)
				case in.Type.NonNull && in.DefaultValue == nil:
					m[in.Name] = fill(in.Type, in.Name, nil, false)
				}
			}
			return m
		}
		switch def.Name {
		case "Int":
			return 1
		case "Float":
			return 1.5
		case "Boolean":
			return false
		case "Time":
			return "2030-01-01T00:00:00Z"
		case "ID":
			if name == "workspaceId" {
				return workspaceID
			}
			return uuid.NewString()
		}
		return "x"
	}
	var defs, args []string
	vars := map[string]any{}
	for i, a := range l.field.Arguments {
		onPath := a.Name == l.path[0]
		if !onPath && (!a.Type.NonNull || a.DefaultValue != nil) {
			continue
		}
		v := fmt.Sprintf("a%d", i)
		defs = append(defs, "$"+v+": "+a.Type.String())
		args = append(args, a.Name+": $"+v)
		vars[v] = fill(a.Type, a.Name, l.path[1:], onPath)
	}
	selection := ""
	if k := schema.Types[l.field.Type.Name()].Kind; k == ast.Object || k == ast.Interface || k == ast.Union {
		selection = " { __typename }"
	}
	return fmt.Sprintf("%s(%s) { %s(%s)%s }", l.op, strings.Join(defs, ", "), l.field.Name, strings.Join(args, ", "), selection), vars
}

// TestEveryTextArgumentRefusesUnstorableText tries every text leaf of
// every query, mutation and subscription argument of the schema, read
// from the schema itself: the NUL character is BAD_USER_INPUT naming the
// leaf, and arbitrary other text (control characters, accents, emoji,
// long strings, empty ones) is never INTERNAL.
func TestEveryTextArgumentRefusesUnstorableText(t *testing.T) {
	schema := generated.NewExecutableSchema(generated.Config{}).Schema()
	leaves := textLeaves(schema)
	if len(leaves) < 30 {
		t.Fatalf("found %d text leaves in the schema; the walk is broken", len(leaves))
	}
	rng := rand.New(rand.NewPCG(29, 7))
	pool := []rune("aZ09 _-.@|:/\\\"'\t\n\x01\x1f\x7f\u0085\u00e9\u00df\u4e2d\u200b\u202e\ufeff\ufffd\ufffe\U0001F4B3")
	arbitrary := func() string {
		switch rng.IntN(4) {
		case 0:
			return strings.Repeat(string(pool[rng.IntN(len(pool))]), rng.IntN(400))
		default:
			r := make([]rune, rng.IntN(40))
			for i := range r {
				r[i] = pool[rng.IntN(len(pool))]
			}
			return string(r)
		}
	}
	for _, backend := range testenv.Databases() {
		t.Run(backend.Name, func(t *testing.T) {
			// With Stripe (stripe-mock), so that text reaches the calls
			// that need it rather than stopping at their absence.
			s := startServer(t, backend.URL(t), withStripe(testenv.StripeMock(t), nil))
			alice := s.token(t, "alice", true) // a platform admin, and owner of ws
			ws := s.createWorkspace(t, alice, "Alice Inc")
			bc := beDial(t, s, alice)
			var subscriptions int
			send := func(t *testing.T, l textLeaf, text string) (code, field, raw string) {
				t.Helper()
				query, vars := textOperation(schema, l, text, ws)
				var errs []gqlError
				if l.op != ast.Subscription {
					r := s.gql(t, alice, query, vars)
					errs, raw = r.Errors, r.Raw
				} else {
					subscriptions++
					id := fmt.Sprint(subscriptions)
					wsSend(t, bc.c, map[string]any{"id": id, "type": "subscribe", "payload": map[string]any{"query": query, "variables": vars}})
					m, err := bc.next(wsReadTimeout)
					if err != nil {
						t.Fatalf("%s: %v", query, err)
					}
					raw = string(m.Payload)
					var res wsResult
					if m.Type == "error" {
						_ = json.Unmarshal(m.Payload, &errs)
					} else if json.Unmarshal(m.Payload, &res) == nil {
						errs = res.Errors
					}
					wsSend(t, bc.c, map[string]any{"id": id, "type": "complete"})
					if m.Type == "next" {
						bc.expect(t, "complete", id)
					}
				}
				if len(errs) == 0 {
					return "", "", raw
				}
				code, _ = errs[0].Extensions["code"].(string)
				field, _ = errs[0].Extensions["field"].(string)
				return code, field, raw
			}
			for _, l := range leaves {
				t.Run(l.field.Name+"/"+strings.Join(l.path, "."), func(t *testing.T) {
					for _, text := range []string{"a\x00b", "\x00", "x\x00" + strings.Repeat("é", 50)} {
						code, field, raw := send(t, l, text)
						if code != "BAD_USER_INPUT" {
							t.Fatalf("%q at %s: %s", text, l.name(), raw)
						}
						// A custom scalar decodes its text before the field
						// runs, and must refuse it itself: a cursor does, as
						// "cursor" (a scalar added later that answers
						// INTERNAL for bad text fails above).
						if (l.scalar == "String" || l.scalar == "ID") && field != l.name() {
							t.Fatalf("%q at %s: extensions.field = %q: %s", text, l.name(), field, raw)
						}
					}
					texts := []string{"", " ", "\x01\x1f\x7f\u0085", "\u202e\ufeff\u200b", "\ufffd\ufffe",
						// Around the columns' byte limits (100, 200, 255, 320, 500),
						// in characters of one to four bytes.
						strings.Repeat("x", 256), strings.Repeat("é", 60), strings.Repeat("é", 128),
						strings.Repeat("中", 90), strings.Repeat("💳", 70), strings.Repeat("é", 250)}
					for range 4 {
						texts = append(texts, arbitrary())
					}
					for _, text := range texts {
						if code, _, raw := send(t, l, text); code == "INTERNAL" || code == "" && strings.Contains(raw, `"errors"`) {
							t.Fatalf("%q at %s: %s", text, l.name(), raw)
						}
					}
				})
			}
		})
	}
}
