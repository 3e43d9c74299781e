package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"billingapi/auth"
	"billingapi/billing"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
)

// textTestServer is NewServer with no billing service behind it, as a
// platform admin: a resolver that runs panics (INTERNAL), so a
// BAD_USER_INPUT answer shows that the field was refused before its
// directives and resolver.
func textTestServer(t *testing.T) http.Handler {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	srv := NewServer(ServerOptions{
		Resolver: &Resolver{Log: log},
		Log:      log,
		Authenticate: func(string) (auth.Viewer, error) {
			return auth.Viewer{UserID: "u1", Admin: true}, nil
		},
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		srv.ServeHTTP(w, r.WithContext(auth.NewContext(r.Context(), auth.Viewer{UserID: "u1", Admin: true})))
	})
}

type textTestResponse struct {
	Errors []struct {
		Message    string         `json:"message"`
		Path       []any          `json:"path"`
		Extensions map[string]any `json:"extensions"`
	} `json:"errors"`
}

func serveText(t *testing.T, h http.Handler, req *http.Request) textTestResponse {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var out textTestResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("response %d is not JSON: %s", rec.Code, rec.Body)
	}
	if len(out.Errors) != 1 {
		t.Fatalf("got %d errors, want 1: %s", len(out.Errors), rec.Body)
	}
	return out
}

func postText(t *testing.T, h http.Handler, query string, vars map[string]any) textTestResponse {
	t.Helper()
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	return serveText(t, h, req)
}

// expectRefused fails unless r is the one BAD_USER_INPUT error naming
// field, at path, saying why.
func expectRefused(t *testing.T, r textTestResponse, path, field, why string) {
	t.Helper()
	e := r.Errors[0]
	if e.Extensions["code"] != "BAD_USER_INPUT" || e.Extensions["field"] != field {
		t.Errorf("extensions = %v, want code BAD_USER_INPUT and field %q (message %q)", e.Extensions, field, e.Message)
	}
	if len(e.Path) != 1 || e.Path[0] != path {
		t.Errorf("path = %v, want [%s]", e.Path, path)
	}
	if !strings.Contains(e.Message, why) {
		t.Errorf("message %q does not say %q", e.Message, why)
	}
}

const nulMessage = "must not contain the NUL character (U+0000)"

// TestUnstorableTextIsBadInput sends the NUL character in each way a
// client can: in a variable or written in the query (escaped), at the
// top of an argument, inside an input object, in a list, to queries and
// mutations.
func TestUnstorableTextIsBadInput(t *testing.T) {
	h := textTestServer(t)
	for _, c := range []struct {
		name, query string
		vars        map[string]any
		path, field string
	}{
		{"CreateWorkspaceNameInVariable", `mutation($n: String!) { createWorkspace(input: {name: $n}) { id } }`,
			map[string]any{"n": "Acme\x00"}, "createWorkspace", "name"},
		{"CreateWorkspaceNameEscapedInQuery", `mutation { createWorkspace(input: {name: "Acme\u0000"}) { id } }`,
			nil, "createWorkspace", "name"},
		{"CreateWorkspaceNameBracedEscapeInQuery", `mutation { createWorkspace(input: {name: "\u{0}Acme"}) { id } }`,
			nil, "createWorkspace", "name"},
		{"WholeInputInVariable", `mutation($i: CreateWorkspaceInput!) { createWorkspace(input: $i) { id } }`,
			map[string]any{"i": map[string]any{"name": "\x00"}}, "createWorkspace", "name"},
		{"AddWorkspaceMemberUserID", `mutation($u: ID!) { addWorkspaceMember(input: {workspaceId: "w", userId: $u, role: MEMBER}) { id } }`,
			map[string]any{"u": "bob\x00"}, "addWorkspaceMember", "userId"},
		{"ListInInputEscapedInQuery", `mutation { createProduct(input: {name: "P", plan: "pro", features: ["ok", "b\u0000"]}) { id } }`,
			nil, "createProduct", "features"},
		{"ListInInputInVariable", `mutation($f: [String!]) { createProduct(input: {name: "P", plan: "pro", features: $f}) { id } }`,
			map[string]any{"f": []any{"ok", "b\x00"}}, "createProduct", "features"},
		{"ListGivenAsOneValue", `mutation($f: [String!]) { createProduct(input: {name: "P", plan: "pro", features: $f}) { id } }`,
			map[string]any{"f": "b\x00"}, "createProduct", "features"},
		{"OtherArgumentsAreNamedThemselves", `mutation { createSetupIntent(workspaceId: "w", idempotencyKey: "k\u0000") { setupIntentId } }`,
			nil, "createSetupIntent", "idempotencyKey"},
		{"QueryArgument", `query($t: String) { webhookEvents(type: $t) { totalCount } }`,
			map[string]any{"t": "x\x00"}, "webhookEvents", "type"},
	} {
		t.Run(c.name, func(t *testing.T) {
			expectRefused(t, postText(t, h, c.query, c.vars), c.path, c.field, c.field+" "+nulMessage)
		})
	}
}

// TestInvalidUTF8InAGetQueryIsBadInput: raw bytes written into a string
// literal of a GET request's query text are the one way invalid UTF-8
// reaches a field (JSON replaces it everywhere else).
func TestInvalidUTF8InAGetQueryIsBadInput(t *testing.T) {
	h := textTestServer(t)
	q := url.Values{"query": {"{ webhookEvents(type: \"a\xffb\") { totalCount } }"}}
	req := httptest.NewRequest(http.MethodGet, "/graphql?"+q.Encode(), nil)
	expectRefused(t, serveText(t, h, req), "webhookEvents", "type", "type must be valid UTF-8 text")
}

// TestUnstorableTextInASubscriptionIsBadInput: subscriptions come over
// the websocket, through the same executor.
func TestUnstorableTextInASubscriptionIsBadInput(t *testing.T) {
	ts := httptest.NewServer(textTestServer(t))
	defer ts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := mustDialWS(t, ctx, ts.URL)
	wsInitAcked(t, ctx, c)
	for i, query := range []string{
		`subscription($w: ID!) { billingEvents(workspaceId: $w) { eventId } }`,
		`subscription { billingEvents(workspaceId: "w\u0000") { eventId } }`,
	} {
		id := string(rune('1' + i))
		wsWrite(t, ctx, c, map[string]any{"id": id, "type": "subscribe", "payload": map[string]any{
			"query": query, "variables": map[string]any{"w": "w\x00"},
		}})
		m := wsRead(t, ctx, c)
		if m.ID != id || (m.Type != "next" && m.Type != "error") {
			t.Fatalf("got %s id=%q %s, want the refusal of subscription %s", m.Type, m.ID, m.Payload, id)
		}
		var r textTestResponse
		if m.Type == "next" {
			if err := json.Unmarshal(m.Payload, &r); err != nil {
				t.Fatal(err)
			}
		} else if err := json.Unmarshal(m.Payload, &r.Errors); err != nil {
			t.Fatal(err)
		}
		if len(r.Errors) != 1 {
			t.Fatalf("subscription %s: %s", id, m.Payload)
		}
		expectRefused(t, r, "billingEvents", "workspaceId", nulMessage)
		if m.Type == "next" {
			if m := wsRead(t, ctx, c); m.Type != "complete" || m.ID != id {
				t.Fatalf("got %s id=%q, want complete", m.Type, m.ID)
			}
		}
	}
}

// TestTextWalk checks the walk over argument shapes the schema has no
// example of yet (objects in objects, lists of objects, JSON maps, the
// slices gqlparser's coercion builds) and the strings it lets through.
func TestTextWalk(t *testing.T) {
	for _, c := range []struct {
		name, args string // the arguments of a field f
		vars       map[string]any
		field      string // "" when nothing is refused
		err        error
	}{
		{"NestedObjectLiteral", `input: {a: {b: "x\u0000"}}`, nil, "a.b", nil},
		{"NestedObjectVariable", `input: $o`, map[string]any{"o": map[string]any{"a": map[string]any{"b": "x\x00"}}}, "a.b", nil},
		{"VariableInsideLiteral", `input: {a: {b: $s}}`, map[string]any{"s": "\x00"}, "a.b", nil},
		{"OtherArgumentNamesItsObject", `filter: {a: "\u0000"}`, nil, "filter.a", nil},
		{"ListArgumentLiteral", `ids: ["a", "b\u0000"]`, nil, "ids", nil},
		{"ListArgumentVariable", `ids: $l`, map[string]any{"l": []any{"a", "\x00"}}, "ids", nil},
		{"ListOfObjects", `input: {items: $l}`, map[string]any{"l": []any{map[string]any{"k": "ok"}, map[string]any{"k": "\x00"}}}, "items.k", nil},
		{"CoercedSlice", `tags: $l`, map[string]any{"l": []string{"ok", "\x00"}}, "tags", nil},
		{"ListOfLists", `m: [["a"], ["\u0000"]]`, nil, "m", nil},
		{"MapKey", `meta: $m`, map[string]any{"m": map[string]any{"k\x00": "v"}}, "meta", nil},
		{"FirstBadFieldInOrder", `input: $o`, map[string]any{"o": map[string]any{"b": "\x00", "a": "\x00"}}, "a", nil},
		{"RawInvalidUTF8", "s: \"a\xffb\"", nil, "s", errInvalidUTF8Refusal},
		{"InvalidUTF8InVariable", `s: $s`, map[string]any{"s": "\xed\xa0\x80"}, "s", errInvalidUTF8Refusal},
		{"LoneSurrogateEscapeBecomesReplacementCharacter", `s: "\uD800"`, nil, "", nil},
		{"GoodText", `input: {name: "Zoë 💳", tags: ["a\u0001"], n: 3, e: ENUM, b: true, z: null}`, nil, "", nil},
		{"GoodVariables", `input: $o, n: $n`, map[string]any{"o": map[string]any{"a": []any{"x", json.Number("1"), nil, true}}, "n": json.Number("2")}, "", nil},
		{"MissingVariable", `s: $nowhere`, nil, "", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			doc, err := parser.ParseQuery(&ast.Source{Input: "{ f(" + c.args + ") }"})
			if err != nil {
				t.Fatal(err)
			}
			field := doc.Operations[0].SelectionSet[0].(*ast.Field)
			var refused error
			for _, arg := range field.Arguments {
				w := textWalk{vars: c.vars, path: []string{arg.Name}}
				if w.literal(arg.Value) {
					refused = w.refusal()
					break
				}
			}
			if c.field == "" {
				if refused != nil {
					t.Fatalf("refused: %v", refused)
				}
				return
			}
			var be *billing.Error
			if !errors.As(refused, &be) || be.Code != billing.CodeBadUserInput || be.Field != c.field {
				t.Fatalf("got %v, want BAD_USER_INPUT naming %q", refused, c.field)
			}
			want := nulMessage
			if c.err == errInvalidUTF8Refusal {
				want = "must be valid UTF-8 text"
			}
			if !strings.Contains(be.Message, want) {
				t.Errorf("message %q does not say %q", be.Message, want)
			}
		})
	}
}

// errInvalidUTF8Refusal marks the TestTextWalk cases refused for invalid
// UTF-8 rather than NUL.
var errInvalidUTF8Refusal = errors.New("invalid UTF-8")
