package graph

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"billingapi/billing"
	"billingapi/cache"
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
		src: make(chan *cache.Message, cache.SubscriberBuffer),
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

func busMessage(eventID string) *cache.Message {
	return &cache.Message{Payload: fmt.Appendf(nil, `{"event_id":%q,"type":"invoice.paid"}`, eventID)}
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
		a.feed.src <- &cache.Message{Payload: []byte(`not json`)}
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

// reviewedEventResolvers are the fields under BillingEvent that run a
// resolver rather than copy the published event. Each was read for
// whether its answer depends on who asks, since SharedEventResponses
// sends one member's rendering to every member of the workspace:
//   - Payment.refunds, refundedAmount and refundableAmount read the
//     payment's refunds: rows of the event's workspace, which the tenancy
//     rules let every member read alike;
//   - the others turn the event's own values into their GraphQL form (an
//     enum, or null for an empty string or zero).
var reviewedEventResolvers = []string{
	"BillingSubscription.status",
	"Discount.amountOff", "Discount.code", "Discount.percentOff",
	"Invoice.hostedInvoiceUrl", "Invoice.invoicePdf", "Invoice.number",
	"Payment.refundableAmount", "Payment.refundedAmount", "Payment.refunds", "Payment.status",
	"Refund.failureReason", "Refund.reason", "Refund.reasonDetail", "Refund.status",
}

// TestBillingEventFieldsAreTheSameForEveryMember walks every type reachable
// from BillingEvent and fails when a field there has a directive, or a
// resolver that is not in reviewedEventResolvers: either could make a
// member's answer differ from another's, which SharedEventResponses must
// not share. A new resolver that reads only the workspace's rows goes on
// the list, with its reason.
func TestBillingEventFieldsAreTheSameForEveryMember(t *testing.T) {
	schema := generated.NewExecutableSchema(generated.Config{}).Schema()
	resolvers := resolverFields(t)
	seen := map[string]bool{}
	var found []string
	var walk func(name string)
	walk = func(name string) {
		def := schema.Types[name]
		if def == nil || seen[name] || def.Kind != ast.Object {
			return
		}
		seen[name] = true
		for _, f := range def.Fields {
			field := name + "." + f.Name
			if len(f.Directives) > 0 {
				t.Errorf("%s has directive @%s: may its answer differ between members?", field, f.Directives[0].Name)
			}
			if resolvers[strings.ToLower(field)] {
				found = append(found, field)
			}
			walk(f.Type.Name())
		}
	}
	walk("BillingEvent")
	sort.Strings(found)
	if !seen["Payment"] || !seen["Refund"] || !seen["Invoice"] {
		t.Fatalf("the walk missed types under BillingEvent: %v", seen)
	}
	if !slices.Equal(found, reviewedEventResolvers) {
		t.Errorf("resolvers under BillingEvent:\n  %v\nreviewed:\n  %v\nread each new one for whether it depends on the viewer, then update reviewedEventResolvers", found, reviewedEventResolvers)
	}
}

// resolverFields returns "type.field", lower-cased, for every field with a
// resolver method in the generated ResolverRoot (Query, Mutation and
// Subscription included). Lower case, because gqlgen spells initialisms
// its own way: hostedInvoiceUrl's method is HostedInvoiceURL.
func resolverFields(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	root := reflect.TypeFor[generated.ResolverRoot]()
	for i := range root.NumMethod() {
		typeName := root.Method(i).Name
		iface := root.Method(i).Type.Out(0)
		for j := range iface.NumMethod() {
			m := iface.Method(j).Name
			out[strings.ToLower(typeName+"."+m)] = true
		}
	}
	if !out["payment.refunds"] || !out["invoice.hostedinvoiceurl"] {
		t.Fatalf("Payment.refunds or Invoice.hostedInvoiceUrl missing from the resolvers %v: the generated code changed shape", out)
	}
	return out
}
