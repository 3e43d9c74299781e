package sandbox

import (
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// Parameters arrive validated and coerced by the spec (integers are int,
// booleans bool, arrays []any, hashes map[string]any). These read them by
// a dotted path, e.g. "recurring.interval".

func lookup(p map[string]any, path string) (any, bool) {
	var cur any = p
	for _, part := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		cur, ok = m[part]
		if !ok {
			return nil, false
		}
	}
	return cur, true
}

// has reports whether the request sent the parameter.
func (c *call) has(path string) bool { _, ok := lookup(c.params, path); return ok }

// str returns a string parameter, "" when absent.
func (c *call) str(path string) string {
	v, _ := lookup(c.params, path)
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	default:
		return fmt.Sprint(x)
	}
}

// int returns an integer parameter and whether it was sent.
func (c *call) int(path string) (int64, bool) {
	v, ok := lookup(c.params, path)
	if !ok {
		return 0, false
	}
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int64:
		return x, true
	case float64:
		return int64(x), true
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		return n, err == nil
	}
	return 0, false
}

// bool returns a boolean parameter (false when absent).
func (c *call) bool(path string) bool {
	v, _ := lookup(c.params, path)
	switch x := v.(type) {
	case bool:
		return x
	case string:
		return x == "true"
	}
	return false
}

// hash returns a hash parameter (nil when absent).
func (c *call) hash(path string) map[string]any {
	v, _ := lookup(c.params, path)
	m, _ := v.(map[string]any)
	return m
}

// list returns an array parameter as hashes (items[0][price]=...).
func (c *call) list(path string) []map[string]any {
	v, _ := lookup(c.params, path)
	var out []map[string]any
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			if m, ok := e.(map[string]any); ok {
				out = append(out, m)
			}
		}
	case map[string]any: // an index-keyed hash the coercer left alone
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { a, _ := strconv.Atoi(keys[i]); b, _ := strconv.Atoi(keys[j]); return a < b })
		for _, k := range keys {
			if m, ok := x[k].(map[string]any); ok {
				out = append(out, m)
			}
		}
	}
	return out
}

// strings returns an array parameter of strings (lookup_keys[]=a).
func (c *call) strings(path string) []string {
	v, _ := lookup(c.params, path)
	return stringList(v)
}

// stringList reads an array of strings, or one string, as a list.
func stringList(v any) []string {
	switch x := v.(type) {
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			out = append(out, fmt.Sprint(e))
		}
		return out
	case string:
		return []string{x}
	}
	return nil
}

// metadata applies a metadata parameter to an object as Stripe does: keys
// are added or replaced, a key set to "" is removed, and metadata="" clears
// it all.
func (c *call) metadata(o object) *Error {
	v, ok := lookup(c.params, "metadata")
	if !ok {
		if o["metadata"] == nil {
			o["metadata"] = map[string]any{}
		}
		return nil
	}
	cur, _ := o["metadata"].(map[string]any)
	if cur == nil {
		cur = map[string]any{}
	}
	switch m := v.(type) {
	case string:
		if m != "" {
			return badRequest("metadata", "Invalid metadata: must be a hash or an empty string.")
		}
		cur = map[string]any{}
	case map[string]any:
		for k, val := range m {
			sv := fmt.Sprint(val)
			if sv == "" {
				delete(cur, k)
				continue
			}
			if len(k) > 40 {
				return badRequest("metadata", "Invalid metadata: keys must be at most 40 characters (%q).", k)
			}
			if len(sv) > 500 {
				return badRequest("metadata", "Invalid metadata: values must be at most 500 characters (key %q).", k)
			}
			cur[k] = sv
		}
		if len(cur) > 50 {
			return badRequest("metadata", "Invalid metadata: at most 50 keys.")
		}
	}
	o["metadata"] = cur
	return nil
}

// expansions returns the expand[] parameter.
func expansions(p map[string]any) []string { return stringList(p["expand"]) }

// expand returns a copy of result in which each expand[] path (e.g.
// "latest_invoice.payment_intent", "data.product") has its ids replaced by
// the stored objects.
func (s *Server) expand(result any, paths []string) any {
	o, ok := result.(object)
	if !ok {
		return result
	}
	out := clone(o)
	for _, p := range paths {
		s.expandPath(out, strings.Split(p, "."))
	}
	return out
}

func (s *Server) expandPath(o map[string]any, parts []string) {
	if len(parts) == 0 || o == nil {
		return
	}
	v, ok := o[parts[0]]
	if !ok && parts[0] == "refunds" && o["object"] == "charge" {
		// A charge's refunds are listed only when asked for.
		l := s.chargeRefunds(str(o["id"]))
		o["refunds"] = l
		v, ok = l, true
	}
	if !ok {
		return
	}
	switch x := v.(type) {
	case string:
		r := s.st.Objects[x]
		if r == nil {
			return
		}
		c := clone(r.Obj)
		o[parts[0]] = c
		s.expandPath(c, parts[1:])
	case map[string]any:
		s.expandPath(x, parts[1:])
	case []any:
		for i, e := range x {
			switch el := e.(type) {
			case map[string]any:
				s.expandPath(el, parts[1:])
			case string:
				if len(parts) == 1 {
					if r := s.st.Objects[el]; r != nil {
						x[i] = clone(r.Obj)
					}
				}
			}
		}
	}
}

// page answers a list request from items (newest first), honouring limit,
// starting_after and ending_before like Stripe's list endpoints.
func (c *call) page(items []object) (object, error) {
	limit := int64(10)
	if n, ok := c.int("limit"); ok {
		if n < 1 || n > 100 {
			return nil, badRequest("limit", "Invalid limit: must be between 1 and 100.")
		}
		limit = n
	}
	start := 0
	if after := c.str("starting_after"); after != "" {
		i := indexOf(items, after)
		if i < 0 {
			return nil, noSuch("object", "starting_after", after)
		}
		start = i + 1
	}
	end := len(items)
	if before := c.str("ending_before"); before != "" {
		i := indexOf(items, before)
		if i < 0 {
			return nil, noSuch("object", "ending_before", before)
		}
		end = i
		start = max(0, end-int(limit))
	}
	stop := min(end, start+int(limit))
	data := make([]any, 0, stop-start)
	for _, it := range items[start:stop] {
		data = append(data, it)
	}
	hasMore := stop < end
	if c.str("ending_before") != "" {
		hasMore = start > 0
	}
	return object{"object": "list", "data": data, "has_more": hasMore, "url": (&url.URL{Path: c.r.URL.Path}).String()}, nil
}

func indexOf(items []object, id string) int {
	for i, it := range items {
		if it["id"] == id {
			return i
		}
	}
	return -1
}
