package eventbus_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"billingapi/cache"
	"billingapi/eventbus"
	"billingapi/internal/testenv"
)

// startBus starts bus for the test and closes it after.
func startBus(t *testing.T, bus *eventbus.Bus) *eventbus.Bus {
	t.Helper()
	if err := bus.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bus.Close() })
	return bus
}

// TestBus: local subscribers of a workspace share each message, decoded
// once; a subscriber that does not read loses its oldest events rather
// than stall the others; nothing is received after a subscription ends.
func TestBus(t *testing.T) {
	for name, open := range testenv.Redises(t) {
		t.Run(name, func(t *testing.T) {
			rdb, prefix := open(t)
			bus := startBus(t, eventbus.New(rdb, prefix, nil, nil))
			ctx := context.Background()

			var decodes atomic.Int64
			decode := func(b []byte) (any, error) { decodes.Add(1); return string(b), nil }
			readers := make([]<-chan *eventbus.Message, 3)
			for i := range readers {
				readers[i] = bus.Subscribe(ctx, "ws1")
			}
			stuck := bus.Subscribe(ctx, "ws1") // never read
			other := bus.Subscribe(ctx, "ws2")

			const n = 100 // more than a subscriber's buffer
			for i := range n {
				if err := bus.Publish(ctx, "ws1", fmt.Appendf(nil, "e%d", i)); err != nil {
					t.Fatal(err)
				}
				for _, r := range readers {
					select {
					case m := <-r:
						v, _ := m.Decode(decode)
						if v != fmt.Sprintf("e%d", i) {
							t.Fatalf("event %d: got %v", i, v)
						}
					case <-time.After(2 * time.Second):
						t.Fatalf("event %d not delivered", i)
					}
				}
			}
			if d := decodes.Load(); d != n {
				t.Errorf("%d messages decoded %d times for 3 subscribers, want once each", n, d)
			}
			if got := len(stuck); got != eventbus.SubscriberBuffer {
				t.Errorf("a subscriber that does not read holds %d events, want its buffer of %d", got, eventbus.SubscriberBuffer)
			}
			if m := <-stuck; string(m.Payload) != fmt.Sprintf("e%d", n-eventbus.SubscriberBuffer) {
				t.Errorf("the stuck subscriber's oldest event is %s, want the oldest ones dropped", m.Payload)
			}
			if len(other) != 0 {
				t.Errorf("a subscriber of another workspace got %d events", len(other))
			}

			// A subscription that ends is closed and receives nothing more.
			sctx, cancel := context.WithCancel(ctx)
			var after atomic.Bool
			done := make(chan struct{})
			bus.SubscribeFunc(sctx, "ws1", func(*eventbus.Message) {
				select {
				case <-done:
					after.Store(true)
				default:
				}
			}, func() { close(done) })
			before := bus.Subscribers()
			cancel()
			<-done
			if bus.Subscribers() != before-1 {
				t.Errorf("subscribers %d after one ended, want %d", bus.Subscribers(), before-1)
			}
			_ = bus.Publish(ctx, "ws1", []byte("late"))
			<-readers[0]
			if after.Load() {
				t.Error("an ended subscription received an event")
			}
		})
	}
}

func TestMessageShare(t *testing.T) {
	t.Run("one computation for every caller of a key", func(t *testing.T) {
		m := &eventbus.Message{Payload: []byte(`{}`)}
		var computed atomic.Int32
		release := make(chan struct{})
		const callers = 50
		got := make(chan any, callers)
		for range callers {
			go func() {
				v, err := m.Share(context.Background(), "k", func() (any, bool) {
					computed.Add(1)
					<-release // the others arrive while this one computes
					return "rendered", true
				})
				if err != nil {
					t.Error(err)
				}
				got <- v
			}()
		}
		time.Sleep(20 * time.Millisecond)
		close(release)
		for range callers {
			if v := <-got; v != "rendered" {
				t.Fatalf("Share = %v, want the first caller's value", v)
			}
		}
		if n := computed.Load(); n != 1 {
			t.Errorf("computed %d times for %d callers, want once", n, callers)
		}
		if v, _ := m.Share(context.Background(), "other", func() (any, bool) { return "other key", true }); v != "other key" {
			t.Errorf("another key got %v, want its own value", v)
		}
	})
	t.Run("a declined value is the caller's only", func(t *testing.T) {
		m := &eventbus.Message{Payload: []byte(`{}`)}
		ctx := context.Background()
		if v, _ := m.Share(ctx, "k", func() (any, bool) { return "cut short", false }); v != "cut short" {
			t.Errorf("the declining caller got %v, want its own value", v)
		}
		if v, _ := m.Share(ctx, "k", func() (any, bool) { return "complete", true }); v != "complete" {
			t.Errorf("the next caller got %v, want a fresh computation", v)
		}
		if v, _ := m.Share(ctx, "k", func() (any, bool) { t.Error("computed again after a shared value"); return nil, false }); v != "complete" {
			t.Errorf("a later caller got %v, want the shared value", v)
		}
	})
	t.Run("a waiter leaves when its context ends", func(t *testing.T) {
		m := &eventbus.Message{Payload: []byte(`{}`)}
		computing, release := make(chan struct{}), make(chan struct{})
		go m.Share(context.Background(), "k", func() (any, bool) {
			close(computing)
			<-release // stuck, like a render waiting on a hung database
			return "late", true
		})
		<-computing
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		done := make(chan error, 1)
		go func() {
			_, err := m.Share(ctx, "k", func() (any, bool) { t.Error("a waiter computed"); return nil, false })
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil {
				t.Error("the waiter got no error when its context ended")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the waiter stayed blocked after its context ended")
		}
		close(release)
		if v, err := m.Share(context.Background(), "k", func() (any, bool) { return "again", true }); err != nil || v != "late" {
			t.Errorf("after the computation: got %v, %v; want its value", v, err)
		}
	})
}

// TestBusDropsTheWorkspaceFromTheNearCacheBeforeDelivering: an event
// reaches its subscribers only after its workspace's near-cache group is
// gone on their replica, so that a client reading the workspace on the
// push is not answered from memory with what the event changed, even when
// the invalidation that came with the change has not arrived yet (it
// travels on another connection; here it never comes, and entries live a
// minute). Other workspaces' entries stay.
func TestBusDropsTheWorkspaceFromTheNearCacheBeforeDelivering(t *testing.T) {
	for name, open := range testenv.Redises(t) {
		t.Run(name, func(t *testing.T) {
			rdb, prefix := open(t)
			near := cache.NewNear(rdb, prefix, time.Minute, nil)
			near.Start(context.Background())
			t.Cleanup(near.Close)
			for deadline := time.Now().Add(5 * time.Second); !near.Enabled(); time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the near cache did not turn on")
				}
			}
			bus := startBus(t, eventbus.New(rdb, prefix, near, nil))
			ctx := context.Background()
			fill(near, cache.WorkspaceGroup("ws1"), "status", "active")
			fill(near, cache.WorkspaceGroup("ws2"), "status", "active")
			events := bus.Subscribe(ctx, "ws1")
			if err := bus.Publish(ctx, "ws1", []byte(`{"type":"customer.subscription.deleted"}`)); err != nil {
				t.Fatal(err)
			}
			select {
			case <-events:
			case <-time.After(2 * time.Second):
				t.Fatal("event not delivered")
			}
			if v := held(near, cache.WorkspaceGroup("ws1"), "status"); v != nil {
				t.Errorf("the near cache still answers %v for the event's workspace when its subscriber has the event", v)
			}
			if v := held(near, cache.WorkspaceGroup("ws2"), "status"); v != "active" {
				t.Errorf("another workspace's entry is %v, want it kept", v)
			}
		})
	}
}

// fill stores val the way a reader does: a missing Get, then Fill with its
// ticket.
func fill(n *cache.Near, group, key string, val any) {
	_, _, ticket := n.Get(group, key)
	n.Fill(group, key, val, ticket)
}

// held returns what n answers for key in group, or nil.
func held(n *cache.Near, group, key string) any {
	if v, ok, _ := n.Get(group, key); ok {
		return v
	}
	return nil
}

// TestBusPublishAll: events published together reach their own
// workspaces' subscribers, each workspace's in order, and nothing is sent
// for an empty batch.
func TestBusPublishAll(t *testing.T) {
	for name, open := range testenv.Redises(t) {
		t.Run(name, func(t *testing.T) {
			rdb, prefix := open(t)
			bus := startBus(t, eventbus.New(rdb, prefix, nil, nil))
			ctx := context.Background()
			ws1, ws2 := bus.Subscribe(ctx, "ws1"), bus.Subscribe(ctx, "ws2")
			if err := bus.PublishAll(ctx, nil); err != nil {
				t.Fatalf("an empty batch: %v", err)
			}
			pubs := []eventbus.Publication{{"ws1", []byte("a")}, {"ws2", []byte("b")}, {"ws1", []byte("c")}}
			if err := bus.PublishAll(ctx, pubs); err != nil {
				t.Fatal(err)
			}
			for _, want := range []struct {
				ch       <-chan *eventbus.Message
				payloads []string
			}{{ws1, []string{"a", "c"}}, {ws2, []string{"b"}}} {
				for _, p := range want.payloads {
					select {
					case m := <-want.ch:
						if string(m.Payload) != p {
							t.Fatalf("got %s, want %s", m.Payload, p)
						}
					case <-time.After(2 * time.Second):
						t.Fatalf("%s not delivered", p)
					}
				}
			}
			select {
			case m := <-ws1:
				t.Fatalf("an extra message for ws1: %s", m.Payload)
			case m := <-ws2:
				t.Fatalf("an extra message for ws2: %s", m.Payload)
			case <-time.After(100 * time.Millisecond):
			}
		})
	}
}

// TestBusRevokeAccess: a revocation published on one bus ends the named
// user's subscriptions to the workspace on every bus (replica), once, with
// the reason, and no one else's; end ends one at once.
func TestBusRevokeAccess(t *testing.T) {
	for name, open := range testenv.Redises(t) {
		t.Run(name, func(t *testing.T) {
			rdb, prefix := open(t)
			a := startBus(t, eventbus.New(rdb, prefix, nil, nil))
			b := startBus(t, eventbus.New(rdb, prefix, nil, nil))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			type ending struct {
				who string
				r   *eventbus.Revocation
			}
			ended := make(chan ending, 10)
			sub := func(bus *eventbus.Bus, ws, user, who string) func(*eventbus.Revocation) {
				return bus.SubscribeAs(ctx, ws, user, func(*eventbus.Message) {}, func(r *eventbus.Revocation) { ended <- ending{who, r} })
			}
			sub(b, "ws1", "carol", "carol on B")
			sub(a, "ws1", "carol", "carol on A")
			sub(b, "ws1", "dave", "dave on B")
			sub(b, "ws2", "carol", "carol on B in ws2")
			endDave := sub(a, "ws1", "dave", "dave on A")

			if err := a.RevokeAccess(ctx, "ws1", "carol", "MEMBERSHIP_ENDED"); err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for range 2 {
				select {
				case e := <-ended:
					if e.r == nil {
						t.Fatalf("%s ended without a revocation", e.who)
					}
					got[e.who] = e.r.Reason
				case <-time.After(2 * time.Second):
					t.Fatalf("ended so far: %v; want carol's two subscriptions to ws1", got)
				}
			}
			if got["carol on A"] != "MEMBERSHIP_ENDED" || got["carol on B"] != "MEMBERSHIP_ENDED" {
				t.Fatalf("ended: %v", got)
			}
			endDave(&eventbus.Revocation{UserID: "dave", Reason: "ROLE_CHANGED"})
			if e := <-ended; e.who != "dave on A" || e.r.Reason != "ROLE_CHANGED" {
				t.Fatalf("end: %s %+v", e.who, e.r)
			}
			endDave(nil) // a second end does nothing
			cancel()     // the others end normally, once each
			for range 2 {
				select {
				case e := <-ended:
					if e.r != nil || (e.who != "dave on B" && e.who != "carol on B in ws2") {
						t.Fatalf("at the end of the context: %s %+v", e.who, e.r)
					}
				case <-time.After(2 * time.Second):
					t.Fatal("subscriptions did not end with their context")
				}
			}
			select {
			case e := <-ended:
				t.Fatalf("%s ended twice", e.who)
			case <-time.After(100 * time.Millisecond):
			}
			if n := a.Subscribers() + b.Subscribers(); n != 0 {
				t.Fatalf("%d subscribers left", n)
			}
		})
	}
}
