package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// B5's floor: the same fan-out with none of the billing server's work.
//
// floorServer is a websocket server inside the load generator that speaks
// just enough graphql-transport-ws for the B5 subscribers (it answers
// connection_init with connection_ack) and, for each event, writes one
// pre-rendered next message to every socket, from a goroutine per socket
// as the billing server does. Run with the B5 subscribers and fanout.run,
// it measures what the machine itself costs: the loopback TCP writes and
// reads, websocket framing and the subscribers' own reading, on the same
// cores. B5's latency targets are absolute, so the floor shows how much of
// them is left for the server's work (the webhook, the bus, executing the
// subscription per subscriber).
type floorServer struct {
	URL string
	srv *http.Server

	mu      sync.Mutex
	sockets []chan []byte // one per socket; its writer goroutine drains it
	wg      sync.WaitGroup
}

func startFloorServer() (*floorServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &floorServer{URL: "http://" + ln.Addr().String()}
	f.srv = &http.Server{Handler: http.HandlerFunc(f.serve)}
	go f.srv.Serve(ln)
	return f, nil
}

func (f *floorServer) serve(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"graphql-transport-ws"}})
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx := r.Context()
	out := make(chan []byte, 64)
	f.mu.Lock()
	f.sockets = append(f.sockets, out)
	f.mu.Unlock()
	f.wg.Add(1)
	go func() { // the socket's writer
		defer f.wg.Done()
		for msg := range out {
			if c.Write(ctx, websocket.MessageText, msg) != nil {
				return
			}
		}
	}()
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return
		}
		if bytes.Contains(b, []byte(`"connection_init"`)) {
			out <- []byte(`{"type":"connection_ack"}`)
		}
	}
}

// publish hands one event's next message to every socket's writer.
func (f *floorServer) publish(eventID string) error {
	msg := fmt.Appendf(nil, `{"id":"1","type":"next","payload":{"data":{"billingEvents":{"eventId":%q,"type":"payment_intent.succeeded"}}}}`, eventID)
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, out := range f.sockets {
		select {
		case out <- msg:
		default:
			return fmt.Errorf("a floor socket fell 64 messages behind")
		}
	}
	return nil
}

func (f *floorServer) close() {
	f.srv.Close()
	f.mu.Lock()
	for _, out := range f.sockets {
		close(out)
	}
	f.sockets = nil
	f.mu.Unlock()
	f.wg.Wait()
}

// measureFanoutFloor runs B5's subscribers and events against a
// floorServer.
func measureFanoutFloor(ctx context.Context, n, events int) (fanoutStats, error) {
	fs, err := startFloorServer()
	if err != nil {
		return fanoutStats{}, err
	}
	defer fs.close()
	f, err := connectFanout(ctx, []string{fs.URL}, n, "floor", "floor")
	if err != nil {
		return fanoutStats{}, err
	}
	defer f.close() // before fs.close: the sockets end from the client side
	next := func(i int) (string, []byte) {
		id := fmt.Sprintf("evt_floor_%d", i)
		return id, []byte(id)
	}
	return f.run(ctx, events, 10*time.Second, next, func(id []byte) error { return fs.publish(string(id)) })
}
