package sandbox

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Time in the sandbox: every object lives on a clock. Customers created
// with a test_clock (and their subscriptions, invoices and payments) live
// on that test clock, which moves only when advanced through Stripe's
// test_helpers API. Everything else lives on the sandbox's own clock: the
// wall clock plus the offset `server sandbox advance` adds. The clock's
// id is "" for the sandbox's own, else the test clock's id.

// scheduler reports the earliest work due on a clock at or before until
// (a trial ending, a renewal, a payment retry), with the function that does
// it; run is nil when nothing is due. Families register theirs in routes.
type scheduler func(clock string, until int64) (at int64, run func() error)

// nowOn returns the current Unix time of a clock.
func (s *Server) nowOn(clock string) int64 {
	if t, ok := s.frozen[clock]; ok {
		return t
	}
	if clock == "" {
		return s.opts.Now().Unix() + s.st.ClockOffset
	}
	if tc := s.get("test_helpers.test_clock", clock); tc != nil {
		return num(tc["frozen_time"])
	}
	return s.opts.Now().Unix() + s.st.ClockOffset
}

// clockOfCustomer returns the clock a customer (and what is billed to it)
// lives on.
func (s *Server) clockOfCustomer(customerID string) string {
	if cu := s.get("customer", customerID); cu != nil {
		return idOf(cu["test_clock"])
	}
	return ""
}

// clockOfObject returns the clock an object lives on.
func (s *Server) clockOfObject(o object) string {
	switch o["object"] {
	case "customer":
		return idOf(o["test_clock"])
	case "test_helpers.test_clock":
		return str(o["id"])
	}
	if tc := idOf(o["test_clock"]); tc != "" {
		return tc
	}
	if cu := idOf(o["customer"]); cu != "" {
		return s.clockOfCustomer(cu)
	}
	return ""
}

// runDue does, in time order, all work due on the clock up to until; each
// piece runs with the clock reading its due time, so what it creates
// (a renewal invoice) carries that time.
func (s *Server) runDue(clock string, until int64) error {
	for range 100000 {
		best, run := int64(0), (func() error)(nil)
		for _, sch := range s.schedulers {
			at, r := sch(clock, until)
			if r != nil && at <= until && (run == nil || at < best) {
				best, run = at, r
			}
		}
		if run == nil {
			return nil
		}
		s.frozen[clock] = max(best, s.frozenFloor(clock))
		err := func() error {
			defer delete(s.frozen, clock)
			return run()
		}()
		if err != nil {
			return err
		}
		s.dirty = true
	}
	return fmt.Errorf("sandbox: clock %q: work kept coming due (a scheduler that does not move its object forward)", clock)
}

// frozenFloor is the earliest a clock may read while it catches up: work
// due in its past runs at its current time.
func (s *Server) frozenFloor(clock string) int64 {
	if clock == "" {
		return 0
	}
	if tc := s.get("test_helpers.test_clock", clock); tc != nil {
		return num(tc["frozen_time"])
	}
	return 0
}

// Advance moves the sandbox's own clock forward by d and does the work
// that came due meanwhile; the events it emits are queued for delivery
// when it returns. It returns the clock's new time.
func (s *Server) Advance(d time.Duration) (time.Time, error) {
	if d <= 0 {
		return time.Time{}, fmt.Errorf("sandbox: advance by %s: the clock only moves forward", d)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.ClockOffset += int64(d / time.Second)
	s.dirty = true
	err := s.runDue("", s.nowOn(""))
	if perr := s.persistLocked(); perr != nil && err == nil {
		err = perr
	}
	s.kick()
	return time.Unix(s.nowOn(""), 0).UTC(), err
}

// Now returns the sandbox's own clock.
func (s *Server) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Unix(s.nowOn(""), 0).UTC()
}

// serveControl answers the sandbox's own endpoints, which are not Stripe's:
// POST /_sandbox/advance {"duration": "720h"} and GET /_sandbox/clock.
func (s *Server) serveControl(w http.ResponseWriter, r *http.Request) {
	if e := checkAuth(r); e != nil {
		writeError(w, e)
		return
	}
	switch {
	case r.URL.Path == "/_sandbox/advance" && r.Method == http.MethodPost:
		var body struct {
			Duration string `json:"duration"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&body); err != nil {
			writeError(w, badRequest("duration", "Send {\"duration\": \"720h\"}."))
			return
		}
		d, err := time.ParseDuration(body.Duration)
		if err != nil || d <= 0 {
			writeError(w, badRequest("duration", "Invalid duration %q: a positive Go duration such as 720h.", body.Duration))
			return
		}
		now, err := s.Advance(d)
		if err != nil {
			writeError(w, &Error{Status: http.StatusInternalServerError, Type: "api_error", Message: err.Error()})
			return
		}
		s.mu.Lock()
		pending := len(s.st.Deliveries)
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(mustJSON(object{"clock": now.Unix(), "clock_time": now.Format(time.RFC3339), "pending_deliveries": pending}))
	case r.URL.Path == "/_sandbox/clock" && r.Method == http.MethodGet:
		now := s.Now()
		w.Header().Set("Content-Type", "application/json")
		w.Write(mustJSON(object{"clock": now.Unix(), "clock_time": now.Format(time.RFC3339)}))
	default:
		writeError(w, &Error{Status: http.StatusNotFound, Type: invalidRequest,
			Message: fmt.Sprintf("The sandbox has no control %s %s (it has POST /_sandbox/advance and GET /_sandbox/clock).", r.Method, r.URL.Path)})
	}
}

// routesClocks registers Stripe's test clocks.
func (s *Server) routesClocks() {
	s.handle("POST /v1/test_helpers/test_clocks", func(c *call) (any, error) {
		frozen, ok := c.int("frozen_time")
		if !ok {
			return nil, badRequest("frozen_time", "Missing required param: frozen_time.")
		}
		tc := s.spec.blank("test_helpers.test_clock")
		tc["id"] = newID("clock")
		tc["created"] = s.nowOn("")
		tc["frozen_time"] = frozen
		tc["deletes_after"] = s.nowOn("") + 30*24*3600
		tc["livemode"] = false
		tc["name"] = nilIfEmpty(c.str("name"))
		tc["status"] = "ready"
		s.put(tc)
		return tc, nil
	})
	s.handle("GET /v1/test_helpers/test_clocks", func(c *call) (any, error) {
		return c.page(s.all("test_helpers.test_clock", nil))
	})
	s.handle("GET /v1/test_helpers/test_clocks/{id}", func(c *call) (any, error) {
		if tc := s.get("test_helpers.test_clock", c.r.PathValue("id")); tc != nil {
			return tc, nil
		}
		return nil, noSuch("test clock", "id", c.r.PathValue("id"))
	})
	s.handle("DELETE /v1/test_helpers/test_clocks/{id}", func(c *call) (any, error) {
		id := c.r.PathValue("id")
		if s.get("test_helpers.test_clock", id) == nil {
			return nil, noSuch("test clock", "id", id)
		}
		// Stripe deletes a clock's customers and what is billed to them
		// with it; the sandbox does not, and refuses rather than orphan them.
		if len(s.all("customer", func(cu object) bool { return idOf(cu["test_clock"]) == id })) > 0 {
			return nil, notImplemented("deleting a test clock that has customers (Stripe deletes them with it)")
		}
		delete(s.st.Objects, id)
		s.dirty = true
		return object{"id": id, "object": "test_helpers.test_clock", "deleted": true}, nil
	})
	// Stripe advances a clock in the background and answers "advancing";
	// the sandbox does the work within the request and answers "ready", with
	// the events of the advance already queued.
	s.handle("POST /v1/test_helpers/test_clocks/{id}/advance", func(c *call) (any, error) {
		id := c.r.PathValue("id")
		tc := s.get("test_helpers.test_clock", id)
		if tc == nil {
			return nil, noSuch("test clock", "id", id)
		}
		to, ok := c.int("frozen_time")
		if !ok {
			return nil, badRequest("frozen_time", "Missing required param: frozen_time.")
		}
		if to <= num(tc["frozen_time"]) {
			return nil, badRequest("frozen_time", "The test clock can only be advanced to a time after its current frozen_time (%d).", num(tc["frozen_time"]))
		}
		if err := s.runDue(id, to); err != nil {
			return nil, err
		}
		tc["frozen_time"] = to
		tc["status"] = "ready"
		s.emit(c, "test_helpers.test_clock.ready", tc, nil)
		return tc, nil
	})
}
