package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// BenchmarkFanout publishes one billing event on the bus to 2,000
// graphql-transport-ws subscribers of one workspace (clients in this
// process, over loopback) and waits until every one has read it: the
// server's fan-out (bus dispatch, decoding, execution, websocket write)
// and the clients' reads. B5 of `make bench` measures the same path from
// the webhook.
//
//	go test ./server -run '^$' -bench Fanout -cpuprofile cpu.out -memprofile mem.out
func BenchmarkFanout(b *testing.B) {
	const n = 2000
	w := newBenchWorld(b)
	url := "ws" + strings.TrimPrefix(w.m.URL(), "http") + "/graphql"
	var (
		got  atomic.Int64
		want atomic.Int64
		done = make(chan struct{}, 1)
	)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	b.Cleanup(func() { cancel(); wg.Wait() })
	init, _ := json.Marshal(map[string]any{"type": "connection_init", "payload": map[string]string{"Authorization": "Bearer " + w.token}})
	sub, _ := json.Marshal(map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{
		"query":     `subscription($w: ID!) { billingEvents(workspaceId: $w) { eventId type } }`,
		"variables": map[string]string{"w": w.wsID}}})
	for range n {
		c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Write(ctx, websocket.MessageText, init); err != nil {
			b.Fatal(err)
		}
		if _, m, err := c.Read(ctx); err != nil || !bytes.Contains(m, []byte("connection_ack")) {
			b.Fatalf("%s, %v", m, err)
		}
		if err := c.Write(ctx, websocket.MessageText, sub); err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.CloseNow()
			for {
				_, m, err := c.Read(ctx)
				if err != nil {
					return
				}
				if bytes.Contains(m, []byte(`"next"`)) && got.Add(1) == want.Load() {
					done <- struct{}{}
				}
			}
		}()
	}
	for w.m.Bus.Subscribers() < n {
		time.Sleep(10 * time.Millisecond)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		want.Add(n)
		payload := fmt.Sprintf(`{"event_id":"evt_fanout_%d","type":"payment_intent.succeeded","occurred_at":"2026-01-01T00:00:00Z","workspace_id":%q}`, i, w.wsID)
		if err := w.m.Bus.Publish(ctx, w.wsID, []byte(payload)); err != nil {
			b.Fatal(err)
		}
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			b.Fatalf("%d of %d deliveries", got.Load(), want.Load())
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/n, "µs/delivery")
}
