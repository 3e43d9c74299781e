package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// fanout is a set of graphql-transport-ws subscribers of billingEvents and
// the arrival time of each event at each of them.
type fanout struct {
	n     int
	conns []*websocket.Conn
	ctx   context.Context
	stop  context.CancelFunc
	wg    sync.WaitGroup

	mu     sync.Mutex
	events map[string]*arrivals

	readErrors atomic.Int64
}

// arrivals records when one event reached each subscriber.
type arrivals struct {
	times []atomic.Int64 // UnixNano; 0 = not yet
	got   atomic.Int64
	done  chan struct{}
}

const fanoutQuery = `subscription($w: ID!) { billingEvents(workspaceId: $w) { eventId type } }`

// connectFanout opens n subscribers, subscriber i to urls[i%len(urls)],
// each signed in with token and subscribed to workspace wsID.
func connectFanout(ctx context.Context, urls []string, n int, token, wsID string) (*fanout, error) {
	f := &fanout{n: n, conns: make([]*websocket.Conn, n), events: map[string]*arrivals{}}
	f.ctx, f.stop = context.WithCancel(context.Background())
	sem := make(chan struct{}, 32)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := subscribe(ctx, urls[i%len(urls)], token, wsID)
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("subscriber %d: %w", i, err)
				}
				mu.Unlock()
				return
			}
			f.conns[i] = c
			f.wg.Add(1)
			go f.read(i, c)
		}()
	}
	wg.Wait()
	if firstErr != nil {
		f.close()
		return nil, firstErr
	}
	return f, nil
}

func subscribe(ctx context.Context, base, token, wsID string) (*websocket.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	u := "ws" + strings.TrimPrefix(base, "http") + "/graphql"
	c, _, err := websocket.Dial(dctx, u, &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(1 << 20)
	init, _ := json.Marshal(map[string]any{"type": "connection_init", "payload": map[string]string{"Authorization": "Bearer " + token}})
	if err := c.Write(dctx, websocket.MessageText, init); err != nil {
		c.CloseNow()
		return nil, err
	}
	for {
		_, b, err := c.Read(dctx)
		if err != nil {
			c.CloseNow()
			return nil, fmt.Errorf("waiting for connection_ack: %w", err)
		}
		if bytes.Contains(b, []byte(`"connection_ack"`)) {
			break
		}
	}
	sub, _ := json.Marshal(map[string]any{"id": "1", "type": "subscribe",
		"payload": map[string]any{"query": fanoutQuery, "variables": map[string]string{"w": wsID}}})
	if err := c.Write(dctx, websocket.MessageText, sub); err != nil {
		c.CloseNow()
		return nil, err
	}
	return c, nil
}

// read records arrivals until the connection ends. The arrival time is
// taken as soon as the frame is read, before any decoding.
func (f *fanout) read(i int, c *websocket.Conn) {
	defer f.wg.Done()
	for {
		_, b, err := c.Read(f.ctx)
		now := time.Now().UnixNano()
		if err != nil {
			if f.ctx.Err() == nil {
				f.readErrors.Add(1)
			}
			return
		}
		// Find the type and the event id without decoding the whole
		// message: 2,000 readers share the cores with the servers.
		switch {
		case bytes.Contains(b, []byte(`"type":"ping"`)):
			wctx, cancel := context.WithTimeout(f.ctx, 5*time.Second)
			_ = c.Write(wctx, websocket.MessageText, []byte(`{"type":"pong"}`))
			cancel()
		case bytes.Contains(b, []byte(`"type":"next"`)):
			id := eventIDOf(b)
			f.mu.Lock()
			a := f.events[id]
			f.mu.Unlock()
			if a != nil && a.times[i].CompareAndSwap(0, now) {
				if a.got.Add(1) == int64(f.n) {
					close(a.done)
				}
			}
		}
	}
}

// eventIDOf returns the eventId string of a next message.
func eventIDOf(b []byte) string {
	const key = `"eventId":"`
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return ""
	}
	rest := b[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}

// expect registers an event before it is posted.
func (f *fanout) expect(eventID string) *arrivals {
	a := &arrivals{times: make([]atomic.Int64, f.n), done: make(chan struct{})}
	f.mu.Lock()
	f.events[eventID] = a
	f.mu.Unlock()
	return a
}

func (f *fanout) close() {
	f.stop()
	for _, c := range f.conns {
		if c != nil {
			c.CloseNow()
		}
	}
	f.wg.Wait()
}

// fanoutStats are the delivery latencies of a fan-out run.
type fanoutStats struct {
	Subscribers int     `json:"subscribers"`
	Servers     int     `json:"servers"`
	Events      int     `json:"events"`
	Deliveries  int     `json:"deliveries"`
	Missing     int     `json:"missing"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
	ReadErrors  int64   `json:"read_errors"`
	// Per event: from the 200 to its first arrival (for the server: the
	// webhook applied and published, and the first write), and from its
	// first arrival to its last (the fan-out itself).
	FirstP50ms  float64 `json:"first_p50_ms"`
	FirstMaxMs  float64 `json:"first_max_ms"`
	SpreadP50ms float64 `json:"spread_p50_ms"`
	SpreadMaxMs float64 `json:"spread_max_ms"`
}

// split is the per-event part of a fanoutStats: each event's first
// arrival after the 200 (0 when it came before), and the time from its
// first arrival to its last (over the subscribers that got it).
func (st *fanoutStats) split(firsts, spreads []time.Duration) {
	slices.Sort(firsts)
	slices.Sort(spreads)
	st.FirstP50ms, st.SpreadP50ms = ms(percentile(firsts, 0.5)), ms(percentile(spreads, 0.5))
	if len(firsts) > 0 {
		st.FirstMaxMs, st.SpreadMaxMs = ms(firsts[len(firsts)-1]), ms(spreads[len(spreads)-1])
	}
}

// run posts events one at a time with post, and after each waits until
// every subscriber has it (or timeout). Latency is from the moment the
// webhook's 200 was read to each arrival (an arrival before the 200
// counts as 0).
func (f *fanout) run(ctx context.Context, events int, timeout time.Duration, next func(i int) (string, []byte), post func([]byte) error) (fanoutStats, error) {
	var lat, firsts, spreads []time.Duration
	st := fanoutStats{Subscribers: f.n, Events: events}
	for i := range events {
		id, body := next(i)
		a := f.expect(id)
		if err := post(body); err != nil {
			return st, err
		}
		ok := time.Now().UnixNano()
		select {
		case <-a.done:
		case <-time.After(timeout):
		case <-ctx.Done():
			return st, ctx.Err()
		}
		var lo, hi int64 // the event's first and last arrivals
		for j := range a.times {
			t := a.times[j].Load()
			if t == 0 {
				st.Missing++
				continue
			}
			lat = append(lat, time.Duration(max(t-ok, 0)))
			if lo == 0 || t < lo {
				lo = t
			}
			hi = max(hi, t)
		}
		if lo != 0 {
			firsts = append(firsts, time.Duration(max(lo-ok, 0)))
			spreads = append(spreads, time.Duration(hi-lo))
		}
		f.mu.Lock()
		delete(f.events, id)
		f.mu.Unlock()
	}
	slices.Sort(lat)
	st.Deliveries = len(lat)
	st.P50ms, st.P99ms = ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99))
	if len(lat) > 0 {
		st.MaxMs = ms(lat[len(lat)-1])
	}
	st.ReadErrors = f.readErrors.Load()
	st.split(firsts, spreads)
	return st, nil
}
