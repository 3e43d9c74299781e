// Package relay pages ent queries as Relay connections
// (https://relay.dev/graphql/connections.htm): opaque cursors, keyset
// pagination on a time column and the id (or on the id alone), and the
// page info the specification asks for.
//
// Keyset pagination reads one page with one indexed range scan, however
// deep the page is: a cursor holds the sort key of its row, not an offset.
package relay

import (
	"context"
	"encoding/base64"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"entgo.io/ent/dialect/sql"
	"github.com/99designs/gqlgen/graphql"
	"github.com/google/uuid"
)

// Cursor is the sort key of one row. Time is zero when the connection is
// ordered by id alone.
type Cursor struct {
	Time time.Time
	ID   uuid.UUID
}

// String encodes the cursor; clients treat it as opaque.
func (c Cursor) String() string {
	raw := "i:" + c.ID.String()
	if !c.Time.IsZero() {
		raw = "t:" + strconv.FormatInt(c.Time.UnixNano(), 10) + ":" + c.ID.String()
	}
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// ParseCursor decodes what String wrote.
func ParseCursor(s string) (Cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, errInvalidCursor
	}
	kind, rest, _ := strings.Cut(string(raw), ":")
	var c Cursor
	switch kind {
	case "i":
	case "t":
		nanos, id, ok := strings.Cut(rest, ":")
		n, err := strconv.ParseInt(nanos, 10, 64)
		if !ok || err != nil || n == 0 {
			return Cursor{}, errInvalidCursor
		}
		// The zone does not matter: PostgreSQL compares instants, and the
		// SQLite driver writes every time in UTC (internal/database).
		c.Time, rest = time.Unix(0, n), id
	default:
		return Cursor{}, errInvalidCursor
	}
	// uuid.Parse also takes braces and urn: forms; a cursor is only ever
	// the canonical form String wrote.
	if len(rest) != 36 {
		return Cursor{}, errInvalidCursor
	}
	if c.ID, err = uuid.Parse(rest); err != nil {
		return Cursor{}, errInvalidCursor
	}
	return c, nil
}

// ArgumentError is a connection argument the client got wrong: Field
// names it, Message tells the client what to change. The GraphQL door
// answers it as BAD_USER_INPUT naming the field.
type ArgumentError struct {
	Field   string
	Message string
}

func (e *ArgumentError) Error() string { return e.Field + ": " + e.Message }

var errInvalidCursor = &ArgumentError{Field: "cursor", Message: "The cursor is not one this API returned."}

// MarshalGQL writes the cursor as a GraphQL string.
func (c Cursor) MarshalGQL(w io.Writer) {
	_, _ = io.WriteString(w, strconv.Quote(c.String()))
}

// UnmarshalGQL reads a cursor argument.
func (c *Cursor) UnmarshalGQL(v any) error {
	s, ok := v.(string)
	if !ok {
		return errInvalidCursor
	}
	parsed, err := ParseCursor(s)
	if err != nil {
		return err
	}
	*c = parsed
	return nil
}

// PageInfo is Relay's page information.
type PageInfo struct {
	HasNextPage     bool    `json:"hasNextPage"`
	HasPreviousPage bool    `json:"hasPreviousPage"`
	StartCursor     *Cursor `json:"startCursor,omitempty"`
	EndCursor       *Cursor `json:"endCursor,omitempty"`
}

// Edge is one node of a page and its cursor.
type Edge[T any] struct {
	Node   T      `json:"node"`
	Cursor Cursor `json:"cursor"`
}

// Connection is one page of T.
type Connection[T any] struct {
	Edges    []*Edge[T] `json:"edges"`
	PageInfo PageInfo   `json:"pageInfo"`
	// TotalCount counts every row the connection's filter matches, on
	// every page; it is only computed when the query asks for it.
	TotalCount int `json:"totalCount"`
}

// Args are a connection field's arguments. At most one of First and Last
// is set; the caller has already checked their range.
type Args struct {
	After, Before *Cursor
	First, Last   *int
}

// Order is how a connection is sorted: by TimeColumn then IDColumn, or by
// IDColumn alone when TimeColumn is empty; Desc puts the largest first.
type Order struct {
	TimeColumn string
	IDColumn   string
	Desc       bool
}

// Plan is what a Source applies to its query to load one page: Where and
// OrderBy modify the SELECT, Limit is the row count to ask for.
type Plan struct {
	Where   func(*sql.Selector)
	OrderBy func(*sql.Selector)
	Limit   int
}

// Source is one connection's query: Load runs it with a Plan applied;
// Count counts every row it matches, ignoring the plan.
type Source[T any] struct {
	Load  func(context.Context, Plan) ([]T, error)
	Count func(context.Context) (int, error)
	// CursorOf gives a row's sort key.
	CursorOf func(T) Cursor
}

// Paginate loads the page args ask for. It reads rows only when the query
// selects edges or pageInfo, and counts only when it selects totalCount.
func Paginate[T any](ctx context.Context, args Args, order Order, src Source[T]) (*Connection[T], error) {
	if args.First != nil && args.Last != nil {
		return nil, &ArgumentError{Field: "last", Message: "Pass first or last, not both."}
	}
	for _, c := range []*Cursor{args.After, args.Before} {
		if c != nil && c.Time.IsZero() != (order.TimeColumn == "") {
			return nil, errInvalidCursor
		}
	}
	wantRows, wantCount := selected(ctx)
	conn := &Connection[T]{Edges: []*Edge[T]{}}
	if wantCount {
		n, err := src.Count(ctx)
		if err != nil {
			return nil, err
		}
		conn.TotalCount = n
	}
	if !wantRows {
		return conn, nil
	}

	forward := args.Last == nil
	limit := 0
	if forward && args.First != nil {
		limit = *args.First
	} else if !forward {
		limit = *args.Last
	}
	// Reading backwards (last/before) sorts the other way round, then
	// reverses the page, so both directions are one range scan.
	desc := order.Desc == forward
	rows, err := src.Load(ctx, Plan{
		Where: func(s *sql.Selector) {
			if args.After != nil {
				s.Where(order.beyond(s, *args.After, order.Desc))
			}
			if args.Before != nil {
				s.Where(order.beyond(s, *args.Before, !order.Desc))
			}
		},
		OrderBy: func(s *sql.Selector) {
			by := sql.Asc
			if desc {
				by = sql.Desc
			}
			if order.TimeColumn != "" {
				s.OrderBy(by(s.C(order.TimeColumn)))
			}
			s.OrderBy(by(s.C(order.IDColumn)))
		},
		// One more row than the page says whether another page follows.
		Limit: limit + 1,
	})
	if err != nil {
		return nil, err
	}
	more := len(rows) > limit
	rows = rows[:min(len(rows), limit)]
	if !forward {
		slices.Reverse(rows)
	}
	for _, row := range rows {
		conn.Edges = append(conn.Edges, &Edge[T]{Node: row, Cursor: src.CursorOf(row)})
	}
	if n := len(conn.Edges); n > 0 {
		conn.PageInfo.StartCursor = &conn.Edges[0].Cursor
		conn.PageInfo.EndCursor = &conn.Edges[n-1].Cursor
	}
	if forward {
		conn.PageInfo.HasNextPage = more
		conn.PageInfo.HasPreviousPage = args.After != nil
	} else {
		conn.PageInfo.HasPreviousPage = more
		conn.PageInfo.HasNextPage = args.Before != nil
	}
	return conn, nil
}

// beyond is the predicate "sorts after c" when desc is false and "sorts
// before c" when it is true, in the order's key.
func (o Order) beyond(s *sql.Selector, c Cursor, desc bool) *sql.Predicate {
	cmp := sql.GT
	if desc {
		cmp = sql.LT
	}
	id := cmp(s.C(o.IDColumn), c.ID)
	if o.TimeColumn == "" {
		return id
	}
	t := s.C(o.TimeColumn)
	return sql.Or(cmp(t, c.Time), sql.And(sql.EQ(t, c.Time), id))
}

// selected reports whether the connection field being resolved selects
// rows (edges or pageInfo) and totalCount. Outside a GraphQL request both
// are wanted.
func selected(ctx context.Context) (rows, count bool) {
	if graphql.GetFieldContext(ctx) == nil {
		return true, true
	}
	for _, f := range graphql.CollectFieldsCtx(ctx, nil) {
		switch f.Name {
		case "edges", "pageInfo":
			rows = true
		case "totalCount":
			count = true
		}
	}
	return rows, count
}

// NodeSelects reports whether the connection field being resolved selects
// any of names on its edges' nodes (through aliases and fragments), so
// that a page can load what every node will ask for in one query.
func NodeSelects(ctx context.Context, names ...string) bool {
	if graphql.GetFieldContext(ctx) == nil {
		return false
	}
	oc := graphql.GetOperationContext(ctx)
	for _, edges := range graphql.CollectFieldsCtx(ctx, nil) {
		if edges.Name != "edges" {
			continue
		}
		for _, node := range graphql.CollectFields(oc, edges.Selections, nil) {
			if node.Name != "node" {
				continue
			}
			for _, f := range graphql.CollectFields(oc, node.Selections, nil) {
				if slices.Contains(names, f.Name) {
					return true
				}
			}
		}
	}
	return false
}
