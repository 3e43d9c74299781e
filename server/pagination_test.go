package main

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"billingapi/ent"
	"billingapi/ent/payment"
	"billingapi/ent/privacy"
	"billingapi/ent/refund"
	"billingapi/internal/testenv"

	"github.com/google/uuid"
)

// paymentsPage is one page of workspace.payments as a client reads it.
type paymentsPage struct {
	Workspace struct {
		Payments struct {
			TotalCount int
			Edges      []struct {
				Cursor string
				Node   struct{ ID, Purpose string }
			}
			PageInfo struct {
				HasNextPage, HasPreviousPage bool
				StartCursor, EndCursor       *string
			}
		}
	}
}

// ids returns the page's node ids in order.
func (p paymentsPage) ids() []string {
	var out []string
	for _, e := range p.Workspace.Payments.Edges {
		out = append(out, e.Node.ID)
	}
	return out
}

// walkPages reads a connection size rows at a time, forwards (first and
// after) or backwards (last and before), until no page is left; it calls
// check, when given, on each page (numbered from 1) and returns the node
// ids in list order. It fails the test past 10 pages.
func walkPages(t *testing.T, read func(vars map[string]any) paymentsPage, size int, backwards bool, check func(n int, p paymentsPage)) []string {
	t.Helper()
	var got []string
	vars := map[string]any{"first": size}
	if backwards {
		vars = map[string]any{"last": size}
	}
	for n := 1; ; n++ {
		p := read(vars)
		pi := p.Workspace.Payments.PageInfo
		if check != nil {
			check(n, p)
		}
		if backwards {
			got = append(p.ids(), got...)
			if !pi.HasPreviousPage {
				return got
			}
			vars = map[string]any{"last": size, "before": *pi.StartCursor}
		} else {
			got = append(got, p.ids()...)
			if !pi.HasNextPage {
				return got
			}
			vars = map[string]any{"first": size, "after": *pi.EndCursor}
		}
		if n > 10 {
			t.Fatal("the connection never ran out of pages")
		}
	}
}

const paymentsPageQuery = `query($id: ID!, $first: Int, $after: Cursor, $last: Int, $before: Cursor) {
	workspace(id: $id) { payments(first: $first, after: $after, last: $last, before: $before) {
		totalCount
		edges { cursor node { id purpose } }
		pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
	} }
}`

// TestConnectionPaging pages through workspace.payments forwards and
// backwards on both databases. Three of the seven payments share one
// create_time, so the id must break the tie for no row to be skipped or
// shown twice; a payment of another workspace must never appear.
func TestConnectionPaging(t *testing.T) {
	for name, dbURL := range map[string]func(testing.TB) string{"PostgreSQL": testenv.Postgres, "SQLite": testenv.SQLite} {
		t.Run(name, func(t *testing.T) {
			s := startServer(t, dbURL(t), nil)
			alice, bob := s.token(t, "alice", false), s.token(t, "bob", false)
			wsA, wsB := s.createWorkspace(t, alice, "A"), s.createWorkspace(t, bob, "B")

			// Newest first: p0 (newest) .. p6; p2, p3 and p4 share a time.
			base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
			offsets := []time.Duration{60, 50, 40, 40, 40, 30, 20}
			ctx := privacy.DecisionContext(context.Background(), privacy.Allow)
			type row struct {
				id      uuid.UUID
				purpose string
				at      time.Time
			}
			var want []row
			for i, off := range offsets {
				r := row{purpose: fmt.Sprintf("p%d", i), at: base.Add(off * time.Second)}
				p, err := s.DB.Payment.Create().SetWorkspaceID(uuid.MustParse(wsA)).SetAmount(100).SetCurrency("usd").
					SetPurpose(r.purpose).SetCreatedBy("alice").SetCreateTime(r.at).Save(ctx)
				if err != nil {
					t.Fatal(err)
				}
				r.id = p.ID
				want = append(want, r)
			}
			if _, err := s.DB.Payment.Create().SetWorkspaceID(uuid.MustParse(wsB)).SetAmount(100).SetCurrency("usd").
				SetPurpose("other-workspace").SetCreatedBy("bob").SetCreateTime(base.Add(45 * time.Second)).Save(ctx); err != nil {
				t.Fatal(err)
			}
			// Within one create_time the order is by id, descending.
			slices.SortStableFunc(want, func(a, b row) int {
				if c := b.at.Compare(a.at); c != 0 {
					return c
				}
				return -slices.Compare(a.id[:], b.id[:])
			})
			var wantIDs []string
			for _, r := range want {
				wantIDs = append(wantIDs, r.id.String())
			}

			page := func(vars map[string]any) paymentsPage {
				t.Helper()
				vars["id"] = wsA
				var out paymentsPage
				s.gql(t, alice, paymentsPageQuery, vars).Decode(t, &out)
				if got := out.Workspace.Payments.TotalCount; got != len(want) {
					t.Fatalf("totalCount = %d on a page, want %d (every page counts the whole connection)", got, len(want))
				}
				return out
			}
			t.Run("ForwardsWithFirstAndAfter", func(t *testing.T) {
				pages := 0
				got := walkPages(t, page, 3, false, func(n int, p paymentsPage) {
					pages = n
					pi := p.Workspace.Payments.PageInfo
					if pi.HasPreviousPage != (n > 1) {
						t.Errorf("page %d: hasPreviousPage = %v", n, pi.HasPreviousPage)
					}
					edges := p.Workspace.Payments.Edges
					if len(edges) > 0 && (*pi.StartCursor != edges[0].Cursor || *pi.EndCursor != edges[len(edges)-1].Cursor) {
						t.Errorf("page %d: start/end cursors are not the first and last edges' cursors", n)
					}
				})
				if pages != 3 {
					t.Errorf("%d pages of 3 for 7 payments, want 3", pages)
				}
				if !slices.Equal(got, wantIDs) {
					t.Errorf("forward pages gave\n%v\nwant\n%v", got, wantIDs)
				}
			})

			t.Run("BackwardsWithLastAndBefore", func(t *testing.T) {
				got := walkPages(t, page, 3, true, func(n int, p paymentsPage) {
					if hn := p.Workspace.Payments.PageInfo.HasNextPage; hn != (n > 1) {
						t.Errorf("page %d: hasNextPage = %v", n, hn)
					}
				})
				if !slices.Equal(got, wantIDs) {
					t.Errorf("backward pages gave\n%v\nwant\n%v", got, wantIDs)
				}
			})

			t.Run("AfterAndBeforeTogether", func(t *testing.T) {
				all := page(map[string]any{"first": 7}).Workspace.Payments.Edges
				p := page(map[string]any{"after": all[1].Cursor, "before": all[5].Cursor})
				if got := p.ids(); !slices.Equal(got, wantIDs[2:5]) {
					t.Errorf("between the 2nd and 6th: %v, want %v (the three that share a create_time)", got, wantIDs[2:5])
				}
			})

			t.Run("BeforeAloneGivesTheRowsJustBeforeIt", func(t *testing.T) {
				all := page(map[string]any{"first": 7}).Workspace.Payments.Edges
				p := page(map[string]any{"before": all[3].Cursor})
				pi := p.Workspace.Payments.PageInfo
				// Read backwards from the cursor: the page is the one just
				// before it, so the cursor's own row is a next page.
				if got := p.ids(); !slices.Equal(got, wantIDs[:3]) || pi.HasPreviousPage || !pi.HasNextPage {
					t.Errorf("before the 4th alone: %v (hasPreviousPage %v, hasNextPage %v), want %v, false, true",
						got, pi.HasPreviousPage, pi.HasNextPage, wantIDs[:3])
				}
			})

			t.Run("FirstZeroSaysWhetherRowsExist", func(t *testing.T) {
				p := page(map[string]any{"first": 0})
				if len(p.Workspace.Payments.Edges) != 0 || !p.Workspace.Payments.PageInfo.HasNextPage {
					t.Errorf("first: 0 gave %d edges, hasNextPage %v; want none and true", len(p.Workspace.Payments.Edges), p.Workspace.Payments.PageInfo.HasNextPage)
				}
			})

			t.Run("BadArgumentsAreRefused", func(t *testing.T) {
				var members struct {
					Workspace struct {
						Members struct{ Edges []struct{ Cursor string } }
					}
				}
				s.gql(t, alice, `query($id: ID!) { workspace(id: $id) { members { edges { cursor } } } }`, map[string]any{"id": wsA}).Decode(t, &members)
				memberCursor := members.Workspace.Members.Edges[0].Cursor
				for name, vars := range map[string]map[string]any{
					"FirstAndLast":               {"first": 1, "last": 1},
					"NotBase64":                  {"after": "%%%"},
					"Garbage":                    {"after": "Z2FyYmFnZQ"},
					"UUIDInAnotherForm":          {"after": "aTp7MDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDAwfQ"},
					"CursorOfAnotherConnection":  {"after": memberCursor},
					"TimeCursorWithoutTheTime":   {"before": "dDowOjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMA"},
					"NegativeLast":               {"last": -1},
					"LastAboveTheMaximum":        {"last": 101},
					"CursorThatIsNotAString":     {"after": 12},
					"EmptyCursor":                {"after": ""},
					"TimeCursorWithAMissingPart": {"after": "dDoxMjM0"},
				} {
					vars["id"] = wsA
					r := s.gql(t, alice, paymentsPageQuery, vars)
					if code := r.Code(); code != "BAD_USER_INPUT" {
						t.Errorf("%s: code %q, want BAD_USER_INPUT: %s", name, code, r.Raw)
					}
				}
			})

			t.Run("RowsWithDefaultCreateTimes", func(t *testing.T) {
				// Rows as the API writes them: create_time from ent's
				// time.Now default, monotonic clock reading and all. On
				// SQLite that reading used to be stored, so a row sorted
				// after its own cursor and backward pages repeated rows.
				carol := s.token(t, "carol", false)
				wsC := s.createWorkspace(t, carol, "C")
				var want []string
				for i := range 5 {
					p, err := s.DB.Payment.Create().SetWorkspaceID(uuid.MustParse(wsC)).SetAmount(100).SetCurrency("usd").
						SetPurpose(fmt.Sprintf("c%d", i)).SetCreatedBy("carol").Save(ctx)
					if err != nil {
						t.Fatal(err)
					}
					want = append([]string{p.ID.String()}, want...) // newest first
				}
				read := func(vars map[string]any) paymentsPage {
					t.Helper()
					vars["id"] = wsC
					var out paymentsPage
					s.gql(t, carol, paymentsPageQuery, vars).Decode(t, &out)
					return out
				}
				forward, backward := walkPages(t, read, 2, false, nil), walkPages(t, read, 2, true, nil)
				if !slices.Equal(forward, want) || !slices.Equal(backward, want) {
					t.Errorf("pages of 2 over 5 rows:\nforward  %v\nbackward %v\nwant     %v", forward, backward, want)
				}
			})

			t.Run("AnotherWorkspacesCursorShowsNothingOfIt", func(t *testing.T) {
				// bob's cursor is a valid key; used on alice's workspace it
				// only positions the page, it never reveals bob's rows.
				var out paymentsPage
				s.gql(t, bob, paymentsPageQuery, map[string]any{"id": wsB, "first": 1}).Decode(t, &out)
				p := page(map[string]any{"after": out.Workspace.Payments.Edges[0].Cursor})
				for _, e := range p.Workspace.Payments.Edges {
					if e.Node.Purpose == "other-workspace" {
						t.Fatal("workspace B's payment appeared on workspace A's page")
					}
				}
			})
		})
	}
}

// TestPaymentsPageLoadsRefundsOnce: a page of payments that asks for
// refunds and refund amounts reads the page's refunds in one query, and
// the amounts are those computed one payment at a time (a failed refund
// holds nothing, a pending one holds its amount).
func TestPaymentsPageLoadsRefundsOnce(t *testing.T) {
	for name, dbURL := range map[string]func(testing.TB) string{"PostgreSQL": testenv.Postgres, "SQLite": testenv.SQLite} {
		t.Run(name, func(t *testing.T) {
			s := startServer(t, dbURL(t), nil)
			alice := s.token(t, "alice", false)
			ws := uuid.MustParse(s.createWorkspace(t, alice, "A"))
			ctx := privacy.DecisionContext(context.Background(), privacy.Allow)
			base := time.Now().Add(-time.Hour)
			refunds := map[string][]struct {
				amount int64
				status refund.Status
			}{
				"p0": {{300, refund.StatusSucceeded}, {200, refund.StatusFailed}},
				"p1": {{100, refund.StatusPending}},
				"p2": nil,
			}
			for i, purpose := range []string{"p0", "p1", "p2"} {
				p, err := s.DB.Payment.Create().SetWorkspaceID(ws).SetAmount(1000).SetCurrency("usd").SetPurpose(purpose).
					SetCreatedBy("alice").SetStatus(payment.StatusSucceeded).SetCreateTime(base.Add(time.Duration(i) * time.Minute)).Save(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range refunds[purpose] {
					if err := s.DB.Refund.Create().SetWorkspaceID(ws).SetPaymentID(p.ID).SetAmount(r.amount).SetCurrency("usd").
						SetReason(refund.ReasonRequestedByCustomer).SetStatus(r.status).SetRefundedBy("alice").Exec(ctx); err != nil {
						t.Fatal(err)
					}
				}
			}
			var queries atomic.Int32
			s.DB.Refund.Intercept(ent.InterceptFunc(func(next ent.Querier) ent.Querier {
				return ent.QuerierFunc(func(ctx context.Context, q ent.Query) (ent.Value, error) {
					queries.Add(1)
					return next.Query(ctx, q)
				})
			}))
			var out struct {
				Workspace struct {
					Payments struct {
						Edges []struct {
							Node struct {
								Purpose                          string
								RefundedAmount, RefundableAmount int
								Refunds                          []struct{ Amount int }
							}
						}
					}
				}
			}
			s.gql(t, alice, `query($id: ID!) { workspace(id: $id) { payments { edges { node {
				purpose refundedAmount refundableAmount refunds { amount } } } } } }`, map[string]any{"id": ws.String()}).Decode(t, &out)
			got := map[string]string{}
			for _, e := range out.Workspace.Payments.Edges {
				got[e.Node.Purpose] = fmt.Sprintf("refunded %d refundable %d refunds %d", e.Node.RefundedAmount, e.Node.RefundableAmount, len(e.Node.Refunds))
			}
			want := map[string]string{
				"p0": "refunded 300 refundable 700 refunds 2",
				"p1": "refunded 0 refundable 900 refunds 1",
				"p2": "refunded 0 refundable 1000 refunds 0",
			}
			for k, w := range want {
				if got[k] != w {
					t.Errorf("%s: %s, want %s", k, got[k], w)
				}
			}
			if n := queries.Load(); n != 1 {
				t.Errorf("%d refund queries for a page of 3 payments, want 1", n)
			}
		})
	}
}
