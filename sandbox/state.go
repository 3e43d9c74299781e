package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// object is a Stripe object as it goes over the wire: JSON keys, with
// expandable fields holding ids.
type object = map[string]any

// record is one stored object, with what the sandbox knows about it that
// Stripe does not show (a card's behaviour, pending proration lines).
type record struct {
	Obj      object         `json:"obj"`
	Seq      int64          `json:"seq"`
	Internal map[string]any `json:"internal,omitempty"`
}

type idemRecord struct {
	Fingerprint string `json:"fingerprint"`
	Status      int    `json:"status"`
	Body        []byte `json:"body"`
	Created     int64  `json:"created"`
}

// delivery is one event still to be delivered to one endpoint.
type delivery struct {
	Event    string `json:"event"`
	URL      string `json:"url"`
	Secret   string `json:"secret"`
	Attempts int    `json:"attempts"`
	Due      int64  `json:"due_unix_ms"`
	Queued   int64  `json:"queued_unix_ms"` // when the event was first queued
	Seq      int64  `json:"seq"`
}

// state is everything the sandbox keeps, written to state.json after every
// change.
type state struct {
	Version     int                   `json:"version"`
	Seq         int64                 `json:"seq"`
	Objects     map[string]*record    `json:"objects"`
	Events      []string              `json:"events"` // event ids, oldest first
	Idempotency map[string]idemRecord `json:"idempotency"`
	Deliveries  []*delivery           `json:"deliveries"`
	// ClockOffset is how far (seconds) `advance` has moved the sandbox's own
	// clock ahead of the wall clock.
	ClockOffset int64 `json:"clock_offset"`
	// Seeded names the catalog seeds already applied (`make run` seeds once).
	Seeded map[string]bool `json:"seeded,omitempty"`

	path string
}

const stateVersion = 1

func loadState(dir string) (*state, error) {
	st := &state{Version: stateVersion, Objects: map[string]*record{}, Idempotency: map[string]idemRecord{}, Seeded: map[string]bool{}}
	if dir == "" {
		return st, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("sandbox: data dir: %w", err)
	}
	st.path = filepath.Join(dir, "state.json")
	b, err := os.ReadFile(st.path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sandbox: read state: %w", err)
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("sandbox: %s is not a sandbox state file (remove it to start afresh): %w", st.path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("sandbox: %s has state version %d, this sandbox reads %d (remove it to start afresh)", st.path, st.Version, stateVersion)
	}
	if st.Objects == nil {
		st.Objects = map[string]*record{}
	}
	if st.Idempotency == nil {
		st.Idempotency = map[string]idemRecord{}
	}
	if st.Seeded == nil {
		st.Seeded = map[string]bool{}
	}
	return st, nil
}

// persistLocked writes the state when it changed: to a temporary file,
// then renamed over the old one, so a crash leaves one or the other whole.
func (s *Server) persistLocked() error {
	if !s.dirty || s.st.path == "" {
		s.dirty = false
		return nil
	}
	b, err := json.Marshal(s.st)
	if err != nil {
		return err
	}
	tmp := s.st.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, s.st.path); err != nil {
		return err
	}
	s.dirty = false
	return nil
}

// get returns the stored object with the id and the kind ("customer"), or
// nil.
func (s *Server) get(kind, id string) object {
	r := s.st.Objects[id]
	if r == nil || r.Obj["object"] != kind {
		return nil
	}
	return r.Obj
}

// rec returns the record of the id, or nil.
func (s *Server) rec(id string) *record { return s.st.Objects[id] }

// internal returns the object's private data, created on first use.
func (s *Server) internal(id string) map[string]any {
	r := s.st.Objects[id]
	if r.Internal == nil {
		r.Internal = map[string]any{}
	}
	return r.Internal
}

// put stores a new object (or replaces one), keeping its creation order.
func (s *Server) put(o object) object {
	id := o["id"].(string)
	if r := s.st.Objects[id]; r != nil {
		r.Obj = o
		return o
	}
	s.st.Seq++
	s.st.Objects[id] = &record{Obj: o, Seq: s.st.Seq}
	s.dirty = true
	return o
}

// all returns the stored objects of a kind that match keep, newest first
// (Stripe's list order).
func (s *Server) all(kind string, keep func(object) bool) []object {
	var recs []*record
	for _, r := range s.st.Objects {
		if r.Obj["object"] == kind && (keep == nil || keep(r.Obj)) {
			recs = append(recs, r)
		}
	}
	sort.Slice(recs, func(i, j int) bool {
		ci, cj := num(recs[i].Obj["created"]), num(recs[j].Obj["created"])
		if ci != cj {
			return ci > cj
		}
		return recs[i].Seq > recs[j].Seq
	})
	out := make([]object, len(recs))
	for i, r := range recs {
		out[i] = r.Obj
	}
	return out
}

// num reads a JSON number stored as int64 (fresh) or float64 (loaded).
func num(v any) int64 {
	switch n := v.(type) {
	case int64:
		return n
	case int:
		return int64(n)
	case float64:
		return int64(n)
	case json.Number:
		i, _ := n.Int64()
		return i
	}
	return 0
}

// str reads a string field, "" when absent or null.
func str(v any) string {
	s, _ := v.(string)
	return s
}

// idOf returns the id of an expandable field's value (an id or an object).
func idOf(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case map[string]any:
		return str(x["id"])
	}
	return ""
}

// clone deep-copies an object through JSON, so a snapshot (an event's
// data, a response) does not change with the stored object.
func clone(o object) object {
	if o == nil {
		return nil
	}
	var c object
	if err := json.Unmarshal(mustJSON(o), &c); err != nil {
		panic(err)
	}
	return c
}
