package graph

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"billingapi/billing"
	"billingapi/eventbus"
	"billingapi/graph/generated"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
)

// fakeSubscriber is one subscription as respond sees it: the feed its
// resolver would fill, and a handler that renders like gqlgen's generated
// code, into one buffer reused for every response.
type fakeSubscriber struct {
	feed     *eventFeed
	renders  atomic.Int32
	handle   graphql.ResponseHandler
	observed []bool
	during   func() // called while rendering, when set
}

func newFakeSubscriber(s SharedEventResponses, key string) *fakeSubscriber {
	f := &fakeSubscriber{feed: &eventFeed{
		src: make(chan *eventbus.Message, eventbus.SubscriberBuffer),
		out: make(chan *billing.BillingEvent, 1),
	}}
	var buf bytes.Buffer
	render := func(ctx context.Context) *graphql.Response {
		select {
		case ev, ok := <-f.feed.out:
			if !ok {
				return nil
			}
			f.renders.Add(1)
			if f.during != nil {
				f.during()
			}
			buf.Reset()
			fmt.Fprintf(&buf, `{"billingEvents":{"eventId":%q}}`, ev.EventID)
			return &graphql.Response{Data: buf.Bytes()}
		case <-ctx.Done():
			return nil
		}
	}
	s.Observe = func(shared bool) { f.observed = append(f.observed, shared) }
	f.handle = s.respond(f.feed, key, render)
	return f
}

func busMessage(eventID string) *eventbus.Message {
	return &eventbus.Message{Payload: fmt.Appendf(nil, `{"event_id":%q,"type":"invoice.paid"}`, eventID)}
}

func dataOf(r *graphql.Response) string {
	if r == nil {
		return "<nil>"
	}
	return string(r.Data)
}

// TestSharedEventResponses: subscribers with the same key render each
// event once between them; the shared response keeps its bytes when the
// subscriber that rendered it renders its next event into the same
// buffer; other keys, undecodable messages, a response cut short by its
// subscriber leaving, and the end of the subscription each behave.
func TestSharedEventResponses(t *testing.T) {
	ctx := context.Background()
	s := SharedEventResponses{}

	t.Run("rendered once per key, and kept intact", func(t *testing.T) {
		a, b := newFakeSubscriber(s, "k"), newFakeSubscriber(s, "k")
		other := newFakeSubscriber(s, "other")
		m1, m2 := busMessage("evt_1"), busMessage("evt_2")
		for _, f := range []*fakeSubscriber{a, b, other} {
			f.feed.src <- m1
			f.feed.src <- m2
		}
		a1 := a.handle(ctx)
		a2 := a.handle(ctx) // renders evt_2 into the buffer evt_1 was rendered in
		b1, b2 := b.handle(ctx), b.handle(ctx)
		for _, c := range []struct {
			who  string
			got  *graphql.Response
			want string
		}{
			{"a, first", a1, "evt_1"}, {"a, second", a2, "evt_2"},
			{"b, first", b1, "evt_1"}, {"b, second", b2, "evt_2"},
		} {
			if want := fmt.Sprintf(`{"billingEvents":{"eventId":%q}}`, c.want); dataOf(c.got) != want {
				t.Errorf("%s: got %s, want %s", c.who, dataOf(c.got), want)
			}
		}
		if a1 != b1 {
			t.Errorf("b's first response is not the one a rendered")
		}
		if n := a.renders.Load() + b.renders.Load(); n != 2 {
			t.Errorf("a and b rendered %d times for 2 events, want 2", n)
		}
		if b.renders.Load() != 0 || !slices.Equal(b.observed, []bool{true, true}) || !slices.Equal(a.observed, []bool{false, false}) {
			t.Errorf("b rendered %d times, observed a %v b %v; want b to share both of a's", b.renders.Load(), a.observed, b.observed)
		}
		if o := other.handle(ctx); dataOf(o) != `{"billingEvents":{"eventId":"evt_1"}}` || other.renders.Load() != 1 {
			t.Errorf("another key: got %s after %d renders, want its own rendering of evt_1", dataOf(o), other.renders.Load())
		}
	})

	t.Run("undecodable messages are skipped", func(t *testing.T) {
		a := newFakeSubscriber(s, "k")
		a.feed.src <- &eventbus.Message{Payload: []byte(`not json`)}
		a.feed.src <- busMessage("evt_ok")
		if got := dataOf(a.handle(ctx)); !strings.Contains(got, "evt_ok") {
			t.Errorf("got %s, want the event after the undecodable one", got)
		}
	})

	t.Run("a response cut short is not shared", func(t *testing.T) {
		gone, b := newFakeSubscriber(s, "k"), newFakeSubscriber(s, "k")
		m := busMessage("evt_cut")
		gone.feed.src <- m
		b.feed.src <- m
		cctx, cancel := context.WithCancel(ctx)
		gone.during = cancel // the subscriber leaves while its response is rendered
		_ = gone.handle(cctx)
		if gone.renders.Load() != 1 {
			t.Fatalf("the leaving subscriber rendered %d times, want 1", gone.renders.Load())
		}
		if got := dataOf(b.handle(ctx)); !strings.Contains(got, "evt_cut") || b.renders.Load() != 1 {
			t.Errorf("after a subscriber left mid-render: got %s with %d renders, want b's own rendering", got, b.renders.Load())
		}
	})

	t.Run("a subscriber waiting for another's rendering can leave", func(t *testing.T) {
		a, b := newFakeSubscriber(s, "k"), newFakeSubscriber(s, "k")
		m := busMessage("evt_slow")
		a.feed.src <- m
		b.feed.src <- m
		rendering, release := make(chan struct{}), make(chan struct{})
		a.during = func() { close(rendering); <-release } // a render stuck on the database
		go a.handle(ctx)
		<-rendering
		bctx, cancel := context.WithCancel(ctx)
		got := make(chan *graphql.Response, 1)
		go func() { got <- b.handle(bctx) }()
		time.Sleep(20 * time.Millisecond) // b takes the message and waits for a's rendering
		cancel()
		select {
		case r := <-got:
			if r != nil {
				t.Errorf("the leaving subscriber got %s, want nil (the end of its subscription)", dataOf(r))
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a subscriber that left stayed blocked on another's rendering")
		}
		close(release)
		if b.renders.Load() != 0 {
			t.Errorf("the leaving subscriber rendered %d times", b.renders.Load())
		}
	})

	t.Run("the end of the feed ends the subscription", func(t *testing.T) {
		a := newFakeSubscriber(s, "k")
		a.feed.src <- busMessage("evt_last")
		close(a.feed.src)
		if got := dataOf(a.handle(ctx)); !strings.Contains(got, "evt_last") {
			t.Errorf("got %s, want the event sent before the end", got)
		}
		done := make(chan *graphql.Response, 1)
		go func() { done <- a.handle(ctx) }()
		select {
		case r := <-done:
			if r != nil {
				t.Errorf("after the end: got %s, want nil", dataOf(r))
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the handler did not return after the feed closed")
		}
	})
}

// reviewedEventResolvers are the fields under BillingEvent that run code
// of ours (a resolver, or a method of the model) rather than copy a value
// of the published event. Each was read for whether its answer depends on
// who asks, since SharedEventResponses sends one member's rendering to
// every member of the workspace:
//   - Payment.refunds, refundedAmount and refundableAmount read the
//     payment's refunds: rows of the event's workspace, which the tenancy
//     rules let every member read alike (members are only ever added, so
//     whoever renders is a member, as the others are);
//   - the others turn the event's own values into their GraphQL form (an
//     enum, or null for an empty string or zero).
var reviewedEventResolvers = []string{
	"BillingSubscription.status",
	"Discount.amountOff", "Discount.code", "Discount.percentOff",
	"Invoice.hostedInvoiceUrl", "Invoice.invoicePdf", "Invoice.number", "Invoice.status",
	"Payment.refundableAmount", "Payment.refundedAmount", "Payment.refunds", "Payment.status",
	"Refund.failureReason", "Refund.reason", "Refund.reasonDetail", "Refund.status",
}

// TestBillingEventFieldsAreTheSameForEveryMember walks every type reachable
// from BillingEvent (through lists, interfaces and unions) and fails when
// a field, an argument or a type there has a directive other than
// @deprecated, or when a field runs code of ours that is not in
// reviewedEventResolvers: either could make a member's answer differ from
// another's, which SharedEventResponses must not share. What runs code is
// read from the generated field contexts (IsMethod, IsResolver), which
// gqlgen writes for every field. A new resolver that reads only the
// workspace's rows goes on the list, with its reason.
func TestBillingEventFieldsAreTheSameForEveryMember(t *testing.T) {
	schema := generated.NewExecutableSchema(generated.Config{}).Schema()
	runsCode := generatedFieldContexts(t)
	checkDirectives := func(where string, dirs ast.DirectiveList) {
		for _, d := range dirs {
			if d.Name != "deprecated" {
				t.Errorf("%s has directive @%s: may its answer differ between members?", where, d.Name)
			}
		}
	}
	seen := map[string]bool{}
	var found []string
	var walk func(name string)
	walk = func(name string) {
		def := schema.Types[name]
		if def == nil || seen[name] {
			return
		}
		seen[name] = true
		checkDirectives(name, def.Directives)
		if def.Kind == ast.Interface || def.Kind == ast.Union {
			for _, impl := range schema.PossibleTypes[name] {
				walk(impl.Name)
			}
		}
		for _, f := range def.Fields {
			field := name + "." + f.Name
			checkDirectives(field, f.Directives)
			for _, a := range f.Arguments {
				checkDirectives(field+"("+a.Name+")", a.Directives)
			}
			if def.Kind == ast.Object && !strings.HasPrefix(f.Name, "__") {
				code, ok := runsCode[field]
				if !ok {
					t.Errorf("no generated field context for %s", field)
				}
				if code {
					found = append(found, field)
				}
			}
			walk(f.Type.Name())
		}
	}
	walk("BillingEvent")
	sort.Strings(found)
	if !seen["Payment"] || !seen["Refund"] || !seen["Invoice"] || !seen["Discount"] {
		t.Fatalf("the walk missed types under BillingEvent: %v", seen)
	}
	if !slices.Equal(found, reviewedEventResolvers) {
		t.Errorf("fields under BillingEvent that run code:\n  %v\nreviewed:\n  %v\nread each new one for whether it depends on the viewer, then update reviewedEventResolvers", found, reviewedEventResolvers)
	}
}

// fieldContextFunc matches a generated field context function's name.
var fieldContextFunc = regexp.MustCompile(`(?m)^func \(ec \*executionContext\) fieldContext_(\w+)\(`)

// fieldContextFlags match the two ways gqlgen writes a field context's
// IsMethod and IsResolver.
var fieldContextFlags = []*regexp.Regexp{
	regexp.MustCompile(`graphql\.NewScalarFieldContext\("(\w+)", field, (true|false), (true|false),`),
	regexp.MustCompile(`Object:\s+"(\w+)",\s+Field:\s+field,\s+IsMethod:\s+(true|false),\s+IsResolver:\s+(true|false),`),
}

// generatedFieldContexts reads graph/generated and returns, for every
// "Type.field", whether gqlgen calls code of ours for it (a resolver or a
// model method) rather than read a struct field.
func generatedFieldContexts(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("generated", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no generated code found (%v)", err)
	}
	out := map[string]bool{}
	for _, name := range files {
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		locs := fieldContextFunc.FindAllSubmatchIndex(src, -1)
		for i, loc := range locs {
			end := len(src)
			if i+1 < len(locs) {
				end = locs[i+1][0]
			}
			body := src[loc[1]:end]
			suffix := string(src[loc[2]:loc[3]]) // Type_field
			// A field context of another shape is left out, and the walk
			// then reports its field as having none.
			for _, re := range fieldContextFlags {
				m := re.FindSubmatch(body)
				if m == nil || !strings.HasPrefix(suffix, string(m[1])+"_") {
					continue
				}
				typ := string(m[1])
				out[typ+"."+strings.TrimPrefix(suffix, typ+"_")] = string(m[2]) == "true" || string(m[3]) == "true"
				break
			}
		}
	}
	if !out["Payment.refunds"] || !out["Invoice.hostedInvoiceUrl"] || out["BillingEvent.eventId"] {
		t.Fatalf("the generated field contexts did not read as expected (Payment.refunds %v, Invoice.hostedInvoiceUrl %v, BillingEvent.eventId %v): gqlgen changed how it writes them",
			out["Payment.refunds"], out["Invoice.hostedInvoiceUrl"], out["BillingEvent.eventId"])
	}
	return out
}
