package sandbox

import (
	"bytes"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76/webhook"
)

// emit records an event about obj (a snapshot taken now) and queues its
// delivery to every endpoint that wants its type. prev holds the changed
// fields' previous values for *.updated events (nil for none). c is the
// API request that caused it, or nil for the clock's own work.
func (s *Server) emit(c *call, typ string, obj object, prev map[string]any) {
	ev := object{
		"id":               newID("evt"),
		"object":           "event",
		"api_version":      APIVersion,
		"created":          s.nowOn(s.clockOfObject(obj)),
		"data":             object{"object": clone(obj)},
		"livemode":         false,
		"pending_webhooks": 0,
		"request":          object{"id": nil, "idempotency_key": nil},
		"type":             typ,
	}
	if prev != nil {
		ev["data"].(object)["previous_attributes"] = prev
	}
	if c != nil {
		ev["request"] = object{"id": c.reqID, "idempotency_key": nilIfEmpty(c.idemKey)}
		c.events = append(c.events, ev["id"].(string))
	}
	s.put(ev)
	s.st.Events = append(s.st.Events, ev["id"].(string))
	pending := 0
	for _, ep := range s.endpoints() {
		if !ep.wants(typ) {
			continue
		}
		pending++
		s.queue(ev["id"].(string), ep.url, ep.secret, 0)
		if s.opts.Chaos {
			// A second delivery of the same event, up to two seconds later,
			// and the first one jittered too: duplicates and reordering.
			s.queue(ev["id"].(string), ep.url, ep.secret, time.Duration(rand.IntN(2000))*time.Millisecond)
		}
	}
	ev["pending_webhooks"] = pending
	s.dirty = true
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (s *Server) queue(event, url, secret string, delay time.Duration) {
	s.st.Seq++
	due := s.opts.Now().Add(delay)
	if s.opts.Chaos {
		due = due.Add(time.Duration(rand.IntN(500)) * time.Millisecond)
	}
	s.st.Deliveries = append(s.st.Deliveries, &delivery{Event: event, URL: url, Secret: secret, Due: due.UnixMilli(),
		Queued: s.opts.Now().UnixMilli(), Seq: s.st.Seq})
}

// deliveryWindow is how long a failing delivery is retried, as Stripe does.
const deliveryWindow = 72 * time.Hour

type endpoint struct {
	url, secret string
	events      []string
}

func (e endpoint) wants(typ string) bool {
	return len(e.events) == 0 || slices.Contains(e.events, "*") || slices.Contains(e.events, typ)
}

// endpoints returns where events go: the configured URL, and every enabled
// endpoint registered through the API.
func (s *Server) endpoints() []endpoint {
	var out []endpoint
	if s.opts.WebhookURL != "" {
		out = append(out, endpoint{url: s.opts.WebhookURL, secret: s.opts.WebhookSecret})
	}
	for _, we := range s.all("webhook_endpoint", nil) {
		if we["status"] != "enabled" {
			continue
		}
		var evs []string
		for _, e := range asList(we["enabled_events"]) {
			evs = append(evs, str(e))
		}
		out = append(out, endpoint{url: str(we["url"]), secret: str(s.internal(str(we["id"]))["secret"]), events: evs})
	}
	return out
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// deliverDue posts every delivery that is due, oldest due first, one at a
// time, signed as Stripe signs (stripe-go's own helper), and reschedules
// the ones the endpoint did not answer 2xx with a doubling backoff.
func (s *Server) deliverDue() {
	for {
		s.mu.Lock()
		now := s.opts.Now().UnixMilli()
		sort.SliceStable(s.st.Deliveries, func(i, j int) bool {
			a, b := s.st.Deliveries[i], s.st.Deliveries[j]
			if a.Due != b.Due {
				return a.Due < b.Due
			}
			return a.Seq < b.Seq
		})
		var d *delivery
		if len(s.st.Deliveries) > 0 && s.st.Deliveries[0].Due <= now {
			d = s.st.Deliveries[0]
		}
		var payload []byte
		if d != nil {
			if r := s.st.Objects[d.Event]; r != nil {
				payload = mustJSON(r.Obj)
			}
		}
		s.mu.Unlock()
		if d == nil {
			return
		}
		ok := payload != nil && s.post(d, payload)
		s.mu.Lock()
		// Found again by its sequence number: a request that failed
		// meanwhile may have restored the state, with new delivery values.
		seq := d.Seq
		i := slices.IndexFunc(s.st.Deliveries, func(x *delivery) bool { return x.Seq == seq })
		switch {
		case i < 0: // its endpoint was deleted meanwhile
		case ok || payload == nil:
			s.st.Deliveries = slices.Delete(s.st.Deliveries, i, i+1)
		case s.opts.Now().UnixMilli()-s.st.Deliveries[i].Queued > deliveryWindow.Milliseconds():
			// Stripe gives up on an event after three days of retries.
			s.log.Warn("sandbox: delivery abandoned after three days", "event", d.Event, "url", d.URL)
			s.st.Deliveries = slices.Delete(s.st.Deliveries, i, i+1)
		default:
			d := s.st.Deliveries[i]
			d.Attempts++
			wait := s.opts.RetryBase << min(d.Attempts-1, 20)
			if wait > s.opts.RetryMax || wait <= 0 {
				wait = s.opts.RetryMax
			}
			d.Due = s.opts.Now().Add(wait).UnixMilli()
		}
		s.dirty = true
		if err := s.persistLocked(); err != nil {
			s.log.Error("sandbox: write state", "err", err)
		}
		s.mu.Unlock()
		select {
		case <-s.stop:
			return
		default:
		}
	}
}

func (s *Server) post(d *delivery, payload []byte) bool {
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{
		Payload: payload, Secret: d.Secret, Timestamp: time.Now(),
	})
	req, err := http.NewRequest(http.MethodPost, d.URL, bytes.NewReader(signed.Payload))
	if err != nil {
		s.log.Error("sandbox: webhook endpoint", "url", d.URL, "err", err)
		return false
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Stripe-Signature", signed.Header)
	req.Header.Set("User-Agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks) billingapi-sandbox")
	resp, err := s.opts.HTTPClient.Do(req)
	if err != nil {
		s.log.Warn("sandbox: delivery failed", "event", d.Event, "url", d.URL, "attempt", d.Attempts+1, "err", err)
		return false
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		s.log.Warn("sandbox: delivery refused", "event", d.Event, "url", d.URL, "attempt", d.Attempts+1, "status", resp.StatusCode)
		return false
	}
	s.log.Info("sandbox: delivered", "event", d.Event, "url", d.URL)
	return true
}

// routesEvents registers the event list (which the API's reconciler reads)
// and webhook endpoint registration.
func (s *Server) routesEvents() {
	s.handle("GET /v1/events", func(c *call) (any, error) {
		types := c.strings("types")
		if t := c.str("type"); t != "" {
			types = append(types, t)
		}
		gt, hasGT := c.int("created.gt")
		gte, hasGTE := c.int("created.gte")
		lt, hasLT := c.int("created.lt")
		lte, hasLTE := c.int("created.lte")
		if exact, ok := c.int("created"); ok {
			gte, lte, hasGTE, hasLTE = exact, exact, true, true
		}
		var items []object
		for i := len(s.st.Events) - 1; i >= 0; i-- {
			ev := s.st.Objects[s.st.Events[i]].Obj
			cr := num(ev["created"])
			switch {
			case hasGT && cr <= gt, hasGTE && cr < gte, hasLT && cr >= lt, hasLTE && cr > lte:
				continue
			}
			if len(types) > 0 && !matchesType(types, str(ev["type"])) {
				continue
			}
			items = append(items, ev)
		}
		return c.page(items)
	})
	s.handle("GET /v1/events/{id}", func(c *call) (any, error) {
		if ev := s.get("event", c.r.PathValue("id")); ev != nil {
			return ev, nil
		}
		return nil, noSuch("event", "id", c.r.PathValue("id"))
	})

	s.handle("POST /v1/webhook_endpoints", func(c *call) (any, error) {
		if e := c.refuse("POST /v1/webhook_endpoints", "connect"); e != nil {
			return nil, e
		}
		if v := c.str("api_version"); v != "" && v != APIVersion {
			return nil, notImplemented("webhook endpoints of API version " + v + " (its events are " + APIVersion + ")")
		}
		u := c.str("url")
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return nil, badRequest("url", "Invalid URL: must be http:// or https://.")
		}
		evs := []any{}
		for _, e := range c.strings("enabled_events") {
			evs = append(evs, e)
		}
		we := s.spec.blank("webhook_endpoint")
		we["id"] = newID("we")
		we["url"] = u
		we["enabled_events"] = evs
		we["status"] = "enabled"
		we["created"] = s.nowOn("")
		we["api_version"] = nilIfEmpty(c.str("api_version"))
		we["description"] = nilIfEmpty(c.str("description"))
		we["livemode"] = false
		if err := c.metadata(we); err != nil {
			return nil, err
		}
		s.put(we)
		secret := "whsec_" + randomID(32)
		s.internal(str(we["id"]))["secret"] = secret
		out := clone(we)
		out["secret"] = secret // shown once, at creation, as Stripe does
		return out, nil
	})
	s.handle("GET /v1/webhook_endpoints", func(c *call) (any, error) {
		return c.page(s.all("webhook_endpoint", nil))
	})
	s.handle("GET /v1/webhook_endpoints/{id}", func(c *call) (any, error) {
		if we := s.get("webhook_endpoint", c.r.PathValue("id")); we != nil {
			return we, nil
		}
		return nil, noSuch("webhook endpoint", "id", c.r.PathValue("id"))
	})
	s.handle("DELETE /v1/webhook_endpoints/{id}", func(c *call) (any, error) {
		id := c.r.PathValue("id")
		if s.get("webhook_endpoint", id) == nil {
			return nil, noSuch("webhook endpoint", "id", id)
		}
		secret := str(s.internal(id)["secret"])
		delete(s.st.Objects, id)
		// What was queued for it goes with it.
		s.st.Deliveries = slices.DeleteFunc(s.st.Deliveries, func(d *delivery) bool { return d.Secret == secret })
		s.dirty = true
		return object{"id": id, "object": "webhook_endpoint", "deleted": true}, nil
	})
}

// matchesType reports whether typ matches one of the filters, which may end
// in "*" (customer.subscription.*).
func matchesType(filters []string, typ string) bool {
	for _, f := range filters {
		if f == typ || (strings.HasSuffix(f, "*") && strings.HasPrefix(typ, strings.TrimSuffix(f, "*"))) {
			return true
		}
	}
	return false
}
