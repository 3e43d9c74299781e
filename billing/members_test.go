package billing_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"billingapi/auth"
	"billingapi/billing"
	"billingapi/ent"
	"billingapi/ent/invitation"
	"billingapi/ent/membership"
	"billingapi/ent/privacy"
	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"

	"github.com/google/uuid"
)

// onBothDatabases runs test on PostgreSQL and on the embedded SQLite.
func onBothDatabases(t *testing.T, test func(t *testing.T, f *fixture)) {
	for name, url := range map[string]func(testing.TB) string{"Postgres": testenv.Postgres, "SQLite": testenv.SQLite} {
		t.Run(name, func(t *testing.T) { test(t, newFixture(t, url(t), billing.Config{})) })
	}
}

// wantCode fails unless err carries code (and, for BAD_USER_INPUT, names
// field when field is not empty).
func wantCode(t *testing.T, what string, err error, code billing.Code, field string) {
	t.Helper()
	if got := billing.ErrorCode(err); err == nil || got != code {
		t.Fatalf("%s: err = %v (%s), want %s", what, err, got, code)
	}
	if field != "" {
		if be, ok := err.(*billing.Error); !ok || be.Field != field {
			t.Fatalf("%s: err = %#v, want the field %q named", what, err, field)
		}
	}
}

// team makes a workspace owned by owner with the given members (user ->
// role), each joined by invitation, and returns it.
func (f *fixture) team(t *testing.T, owner string, members map[string]auth.Role) uuid.UUID {
	t.Helper()
	ws := f.workspace(t, owner)
	for user, role := range members {
		if _, err := f.join(f.as(owner), ws, user, role); err != nil {
			t.Fatalf("join %s as %s: %v", user, role, err)
		}
	}
	return ws
}

// roles returns a workspace's members and their roles.
func (f *fixture) roles(t *testing.T, ws uuid.UUID) map[string]auth.Role {
	t.Helper()
	rows, err := f.store.Client.Membership.Query().Where(membership.WorkspaceID(ws)).All(privacy.DecisionContext(f.ctx, privacy.Allow))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]auth.Role{}
	for _, m := range rows {
		out[m.UserID] = m.Role
	}
	return out
}

func TestInvitations(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, f *fixture) {
		ws := f.team(t, "alice", map[string]auth.Role{"adam": auth.RoleAdmin, "mike": auth.RoleMember})
		invite := func(as string, in billing.InviteInput) (*ent.Invitation, error) {
			in.WorkspaceID = ws
			if in.Role == "" {
				in.Role = auth.RoleMember
			}
			return f.svc.Invite(f.as(as), in)
		}

		t.Run("BadInputNamesTheField", func(t *testing.T) {
			for _, tc := range []struct {
				name  string
				in    billing.InviteInput
				field string
			}{
				{"Nobody", billing.InviteInput{}, "email"},
				{"Both", billing.InviteInput{Email: "a@example.com", UserID: "a"}, "email"},
				{"NotAnEmail", billing.InviteInput{Email: "not-an-email"}, "email"},
				{"EmailWithAName", billing.InviteInput{Email: "Zoe <zoe@example.com>"}, "email"},
				{"EmailTooLong", billing.InviteInput{Email: strings.Repeat("a", 320) + "@example.com"}, "email"},
				{"UserIDTooLong", billing.InviteInput{UserID: strings.Repeat("u", 256)}, "userId"},
				{"UnknownRole", billing.InviteInput{UserID: "u", Role: "superuser"}, "role"},
				{"AMember", billing.InviteInput{UserID: "mike"}, "userId"},
				{"AMemberByEmail", billing.InviteInput{Email: "MIKE@example.com"}, "email"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					_, err := invite("alice", tc.in)
					wantCode(t, tc.name, err, billing.CodeBadUserInput, tc.field)
				})
			}
		})

		t.Run("WhoMayInvite", func(t *testing.T) {
			_, err := invite("mike", billing.InviteInput{UserID: "x1"})
			wantCode(t, "a member invites", err, billing.CodeForbidden, "")
			_, err = invite("adam", billing.InviteInput{UserID: "x1", Role: auth.RoleOwner})
			wantCode(t, "an admin invites an owner", err, billing.CodeForbidden, "")
			_, err = invite("mallory", billing.InviteInput{UserID: "x1"})
			wantCode(t, "an outsider invites", err, billing.CodeNotFound, "")
			if _, err := invite("adam", billing.InviteInput{UserID: "x1", Role: auth.RoleAdmin}); err != nil {
				t.Fatalf("an admin invites an admin: %v", err)
			}
		})

		t.Run("ByEmailAcceptedByTheInvitee", func(t *testing.T) {
			inv, err := invite("alice", billing.InviteInput{Email: " Zoe@Example.COM "})
			if err != nil {
				t.Fatal(err)
			}
			if inv.Email != "zoe@example.com" || inv.UserID != "" || inv.Status != invitation.StatusPending ||
				time.Until(inv.ExpiresAt) < billing.InvitationTTL-time.Minute {
				t.Fatalf("invitation = %+v", inv)
			}
			again, err := invite("adam", billing.InviteInput{Email: "zoe@example.com", Role: auth.RoleAdmin})
			if err != nil || again.ID != inv.ID || again.Role != auth.RoleAdmin {
				t.Fatalf("inviting zoe again: %+v, %v; want the same invitation renewed as ADMIN", again, err)
			}
			mine, err := f.svc.MyInvitations(f.as("zoe"))
			if err != nil || len(mine) != 1 || mine[0].ID != inv.ID {
				t.Fatalf("zoe's invitations: %v, %v", mine, err)
			}
			if name, err := f.svc.InvitationWorkspaceName(f.as("zoe"), mine[0]); err != nil || name != "alice's workspace" {
				t.Fatalf("the workspace name zoe sees: %q, %v", name, err)
			}
			if others, err := f.svc.MyInvitations(f.as("mallory")); err != nil || len(others) != 0 {
				t.Fatalf("mallory sees %v, %v", others, err)
			}
			_, err = f.svc.AcceptInvitation(f.as("mallory"), inv.ID)
			wantCode(t, "mallory accepts zoe's invitation", err, billing.CodeNotFound, "")
			_, err = f.svc.AcceptInvitation(f.as("alice"), inv.ID)
			wantCode(t, "the inviter accepts zoe's invitation", err, billing.CodeForbidden, "")
			m, err := f.svc.AcceptInvitation(f.as("zoe"), inv.ID)
			if err != nil || m.UserID != "zoe" || m.Role != auth.RoleAdmin || m.WorkspaceID != ws {
				t.Fatalf("zoe accepts: %+v, %v", m, err)
			}
			_, err = f.svc.AcceptInvitation(f.as("zoe"), inv.ID)
			wantCode(t, "accepting twice", err, billing.CodeBadUserInput, "invitationId")
			if mine, _ := f.svc.MyInvitations(f.as("zoe")); len(mine) != 0 {
				t.Fatalf("an accepted invitation is still listed: %v", mine)
			}
		})

		t.Run("DeclinedRevokedAndExpiredCannotBeAccepted", func(t *testing.T) {
			declined, _ := invite("alice", billing.InviteInput{UserID: "yan"})
			_, err := f.svc.DeclineInvitation(f.as("mike"), declined.ID)
			wantCode(t, "a plain member declines another's invitation", err, billing.CodeNotFound, "")
			if got, err := f.svc.DeclineInvitation(f.as("yan"), declined.ID); err != nil || got.Status != invitation.StatusDeclined {
				t.Fatalf("yan declines: %+v, %v", got, err)
			}
			_, err = f.svc.AcceptInvitation(f.as("yan"), declined.ID)
			wantCode(t, "accepting a declined invitation", err, billing.CodeBadUserInput, "invitationId")

			revoked, _ := invite("alice", billing.InviteInput{UserID: "xu"})
			_, err = f.svc.RevokeInvitation(f.as("mike"), revoked.ID)
			wantCode(t, "a plain member revokes", err, billing.CodeNotFound, "")
			if got, err := f.svc.RevokeInvitation(f.as("adam"), revoked.ID); err != nil || got.Status != invitation.StatusRevoked {
				t.Fatalf("an admin revokes: %+v, %v", got, err)
			}
			_, err = f.svc.AcceptInvitation(f.as("xu"), revoked.ID)
			wantCode(t, "accepting a revoked invitation", err, billing.CodeBadUserInput, "invitationId")
			toOwn, _ := invite("alice", billing.InviteInput{UserID: "olga", Role: auth.RoleOwner})
			_, err = f.svc.RevokeInvitation(f.as("adam"), toOwn.ID)
			wantCode(t, "an admin revokes an invitation to be an owner", err, billing.CodeForbidden, "")

			expired, _ := invite("alice", billing.InviteInput{UserID: "wu"})
			if err := f.store.Client.Invitation.UpdateOneID(expired.ID).SetExpiresAt(time.Now().Add(-time.Second)).
				Exec(privacy.DecisionContext(f.ctx, privacy.Allow)); err != nil {
				t.Fatal(err)
			}
			if mine, _ := f.svc.MyInvitations(f.as("wu")); len(mine) != 0 {
				t.Fatalf("an expired invitation is listed: %v", mine)
			}
			_, err = f.svc.AcceptInvitation(f.as("wu"), expired.ID)
			wantCode(t, "accepting an expired invitation", err, billing.CodeBadUserInput, "invitationId")
			if _, ok := f.roles(t, ws)["wu"]; ok {
				t.Fatal("an expired invitation made a membership")
			}
		})

		t.Run("MembershipsNeedConsentInTheDataLayer", func(t *testing.T) {
			// Even a write that skips the service's checks cannot put
			// someone in a workspace they were not invited to.
			err := f.store.Client.Membership.Create().SetWorkspaceID(ws).SetUserID("mallory").SetRole(auth.RoleMember).Exec(f.as("mallory"))
			if err == nil {
				t.Fatal("a membership was created without an invitation")
			}
			_, err = f.svc.AddMember(f.as("alice"), ws, "mallory", auth.RoleMember)
			wantCode(t, "an owner adds a member without asking", err, billing.CodeForbidden, "")
			admin := auth.NewContext(f.ctx, auth.Viewer{UserID: "root", Admin: true})
			if m, err := f.svc.AddMember(admin, ws, "support", auth.RoleMember); err != nil || m.UserID != "support" {
				t.Fatalf("a platform admin adds a member: %+v, %v", m, err)
			}
		})

		t.Run("WorkspaceInvitationsAreForManagers", func(t *testing.T) {
			if _, err := f.svc.WorkspaceInvitations(f.as("mike"), ws); billing.ErrorCode(err) != billing.CodeForbidden {
				t.Fatalf("a member lists invitations: %v", err)
			}
			q, err := f.svc.WorkspaceInvitations(f.as("adam"), ws)
			if err != nil {
				t.Fatal(err)
			}
			pending, err := q.All(f.as("adam"))
			if err != nil {
				t.Fatal(err)
			}
			for _, inv := range pending {
				if inv.Status != invitation.StatusPending || inv.WorkspaceID != ws {
					t.Fatalf("listed %+v", inv)
				}
			}
			if len(pending) == 0 {
				t.Fatal("no pending invitations listed")
			}
		})
	})
}

func TestMembershipRules(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, f *fixture) {
		staff := map[string]auth.Role{"adam": auth.RoleAdmin, "amy": auth.RoleAdmin, "mike": auth.RoleMember}
		type step struct {
			name  string
			do    func(ws uuid.UUID) error
			code  billing.Code // "" for allowed
			field string       // the field a BAD_USER_INPUT names
		}
		remove := func(as, who string) func(uuid.UUID) error {
			return func(ws uuid.UUID) error { return f.svc.RemoveMember(f.as(as), ws, who) }
		}
		role := func(as, who string, r auth.Role) func(uuid.UUID) error {
			return func(ws uuid.UUID) error { _, err := f.svc.ChangeMemberRole(f.as(as), ws, who, r); return err }
		}
		leave := func(as string) func(uuid.UUID) error {
			return func(ws uuid.UUID) error { return f.svc.LeaveWorkspace(f.as(as), ws) }
		}
		transfer := func(as, to string) func(uuid.UUID) error {
			return func(ws uuid.UUID) error { _, err := f.svc.TransferOwnership(f.as(as), ws, to); return err }
		}
		for _, tc := range []struct {
			name  string
			steps []step
			want  map[string]auth.Role // the members afterwards
		}{
			{"AMemberRemovesNobody", []step{{"mike removes amy", remove("mike", "amy"), billing.CodeForbidden, ""}},
				map[string]auth.Role{"alice": auth.RoleOwner, "adam": auth.RoleAdmin, "amy": auth.RoleAdmin, "mike": auth.RoleMember}},
			{"AnAdminRemovesMembersAndAdminsNotOwners", []step{
				{"adam removes alice", remove("adam", "alice"), billing.CodeForbidden, ""},
				{"adam removes mike", remove("adam", "mike"), "", ""},
				{"adam removes amy", remove("adam", "amy"), "", ""},
				{"adam removes nobody", remove("adam", "nobody"), billing.CodeNotFound, ""},
			}, map[string]auth.Role{"alice": auth.RoleOwner, "adam": auth.RoleAdmin}},
			{"RolesOnlyOwnersTouchOwners", []step{
				{"mike promotes himself", role("mike", "mike", auth.RoleAdmin), billing.CodeForbidden, ""},
				{"adam promotes mike to admin", role("adam", "mike", auth.RoleAdmin), "", ""},
				{"adam makes mike an owner", role("adam", "mike", auth.RoleOwner), billing.CodeForbidden, ""},
				{"adam demotes alice", role("adam", "alice", auth.RoleMember), billing.CodeForbidden, ""},
				{"an unknown role", role("alice", "mike", "root"), billing.CodeBadUserInput, "role"},
				{"alice demotes herself, the last owner", role("alice", "alice", auth.RoleAdmin), billing.CodeBadUserInput, "role"},
				{"alice makes amy an owner", role("alice", "amy", auth.RoleOwner), "", ""},
				{"amy demotes alice", role("amy", "alice", auth.RoleMember), "", ""},
			}, map[string]auth.Role{"alice": auth.RoleMember, "adam": auth.RoleAdmin, "amy": auth.RoleOwner, "mike": auth.RoleAdmin}},
			{"TheLastOwnerStays", []step{
				{"alice leaves", leave("alice"), billing.CodeBadUserInput, "workspaceId"},
				{"alice removes herself", remove("alice", "alice"), billing.CodeBadUserInput, "workspaceId"},
				{"mike leaves", leave("mike"), "", ""},
				{"mike leaves again", leave("mike"), billing.CodeNotFound, ""},
			}, map[string]auth.Role{"alice": auth.RoleOwner, "adam": auth.RoleAdmin, "amy": auth.RoleAdmin}},
			{"TransferOwnership", []step{
				{"adam transfers", transfer("adam", "mike"), billing.CodeForbidden, ""},
				{"alice transfers to herself", transfer("alice", "alice"), billing.CodeBadUserInput, "userId"},
				{"alice transfers to an outsider", transfer("alice", "mallory"), billing.CodeNotFound, ""},
				{"alice transfers to mike", transfer("alice", "mike"), "", ""},
				{"alice, now an admin, leaves", leave("alice"), "", ""},
			}, map[string]auth.Role{"adam": auth.RoleAdmin, "amy": auth.RoleAdmin, "mike": auth.RoleOwner}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ws := f.team(t, "alice", staff)
				for _, s := range tc.steps {
					err := s.do(ws)
					if s.code == "" {
						if err != nil {
							t.Fatalf("%s: %v", s.name, err)
						}
						continue
					}
					wantCode(t, s.name, err, s.code, s.field)
				}
				if got := f.roles(t, ws); fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Fatalf("members afterwards: %v, want %v", got, tc.want)
				}
			})
		}

		t.Run("RenameWorkspace", func(t *testing.T) {
			ws := f.team(t, "alice", staff)
			_, err := f.svc.RenameWorkspace(f.as("mike"), ws, "Mine")
			wantCode(t, "a member renames", err, billing.CodeForbidden, "")
			_, err = f.svc.RenameWorkspace(f.as("adam"), ws, "  ")
			wantCode(t, "an empty name", err, billing.CodeBadUserInput, "name")
			_, err = f.svc.RenameWorkspace(f.as("adam"), ws, strings.Repeat("n", 101))
			wantCode(t, "a long name", err, billing.CodeBadUserInput, "name")
			if w, err := f.svc.RenameWorkspace(f.as("adam"), ws, " Acme "); err != nil || w.Name != "Acme" {
				t.Fatalf("an admin renames: %+v, %v", w, err)
			}
		})

		t.Run("DeleteWorkspaceIsTheOwners", func(t *testing.T) {
			ws := f.team(t, "alice", staff)
			_, err := f.svc.DeleteWorkspace(f.as("adam"), ws)
			wantCode(t, "an admin deletes", err, billing.CodeForbidden, "")
			if _, err := f.svc.DeleteWorkspace(f.as("alice"), ws); err != nil {
				t.Fatal(err)
			}
			if got := f.roles(t, ws); len(got) != 0 {
				t.Fatalf("members of a deleted workspace: %v", got)
			}
			for _, who := range []string{"alice", "adam", "mike"} {
				_, err := f.svc.Workspace(f.as(who), ws)
				wantCode(t, who+" reads the deleted workspace", err, billing.CodeNotFound, "")
			}
		})
	})
}

// Two people changing the same workspace at once see each other's
// change: each change holds the workspace's lock and checks its rules
// against the memberships as they are under it.
func TestConcurrentMembershipChanges(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, f *fixture) {
		race := func(a, b func() error) (errA, errB error) {
			var wg sync.WaitGroup
			start := make(chan struct{})
			wg.Add(2)
			go func() { defer wg.Done(); <-start; errA = a() }()
			go func() { defer wg.Done(); <-start; errB = b() }()
			close(start)
			wg.Wait()
			return errA, errB
		}
		for i := range 8 {
			t.Run(fmt.Sprint("AdminsRemoveEachOther", i), func(t *testing.T) {
				ws := f.team(t, "alice", map[string]auth.Role{"a1": auth.RoleAdmin, "a2": auth.RoleAdmin})
				e1, e2 := race(
					func() error { return f.svc.RemoveMember(f.as("a1"), ws, "a2") },
					func() error { return f.svc.RemoveMember(f.as("a2"), ws, "a1") })
				if (e1 == nil) == (e2 == nil) {
					t.Fatalf("both or neither removal went through: %v / %v", e1, e2)
				}
				loser := e1
				if loser == nil {
					loser = e2
				}
				wantCode(t, "the removed admin's removal", loser, billing.CodeNotFound, "")
				if got := f.roles(t, ws); len(got) != 2 || got["alice"] != auth.RoleOwner {
					t.Fatalf("members afterwards: %v, want alice and one admin", got)
				}
			})
			t.Run(fmt.Sprint("OwnersDemoteEachOther", i), func(t *testing.T) {
				ws := f.team(t, "o1", map[string]auth.Role{"o2": auth.RoleOwner})
				e1, e2 := race(
					func() error { _, err := f.svc.ChangeMemberRole(f.as("o1"), ws, "o2", auth.RoleAdmin); return err },
					func() error { _, err := f.svc.ChangeMemberRole(f.as("o2"), ws, "o1", auth.RoleAdmin); return err })
				if (e1 == nil) == (e2 == nil) {
					t.Fatalf("both or neither demotion went through: %v / %v", e1, e2)
				}
				owners := 0
				for _, r := range f.roles(t, ws) {
					if r == auth.RoleOwner {
						owners++
					}
				}
				if owners != 1 {
					t.Fatalf("%d owners afterwards, want 1", owners)
				}
			})
			t.Run(fmt.Sprint("OwnersLeaveAtOnce", i), func(t *testing.T) {
				ws := f.team(t, "o1", map[string]auth.Role{"o2": auth.RoleOwner})
				e1, e2 := race(
					func() error { return f.svc.LeaveWorkspace(f.as("o1"), ws) },
					func() error { return f.svc.LeaveWorkspace(f.as("o2"), ws) })
				if (e1 == nil) == (e2 == nil) {
					t.Fatalf("both or neither left: %v / %v", e1, e2)
				}
				if got := f.roles(t, ws); len(got) != 1 {
					t.Fatalf("members afterwards: %v, want the one owner who stayed", got)
				}
			})
		}
	})
}

// A per-seat subscription's quantity follows members who are removed or
// leave, as it follows those who join.
func TestSeatsFollowRemovalAndLeaving(t *testing.T) {
	f := newFixture(t, testenv.SQLite(t), billing.Config{SeatDebounce: 10 * time.Millisecond})
	f.stripe.SetPrices(stripefake.Price{LookupKey: "team_seat", UnitAmount: 800, Interval: "month", Active: true, ProductID: "prod_seat",
		ProductMetadata: map[string]string{"plan": "team", "seats": "per_member"}})
	ws := f.team(t, "owner", map[string]auth.Role{"m1": auth.RoleMember, "m2": auth.RoleMember})
	sub := func(q int64) string {
		return stripefake.SubscriptionJSON(stripefake.Subscription{
			ID: "sub_team", Status: "active", ItemID: "si_team", PriceID: "price_team_seat", LookupKey: "team_seat", Quantity: q,
			Metadata: map[string]string{"workspace_id": ws.String(), "plan": "team"},
		})
	}
	f.stripe.On(stripefake.Rule{Method: "POST", Path: "/v1/subscriptions", Times: 1, Body: sub(3)})
	if _, err := f.svc.CreateSubscription(f.as("owner"), billing.SubscriptionInput{WorkspaceID: ws, LookupKey: "team_seat", Quantity: 3}); err != nil {
		t.Fatal(err)
	}
	const path = "/v1/subscriptions/sub_team"
	sent := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if req, ok := f.stripe.Last("POST", path); ok && req.Form.Get("items[0][quantity]") == want {
				return
			}
			if time.Now().After(deadline) {
				req, _ := f.stripe.Last("POST", path)
				t.Fatalf("no quantity update to %s within 5 s; last sent %v", want, req.Form)
			}
		}
	}
	f.stripe.On(stripefake.Rule{Method: "POST", Path: path, Times: 1, Body: sub(2)})
	if err := f.svc.RemoveMember(f.as("owner"), ws, "m1"); err != nil {
		t.Fatal(err)
	}
	sent("2")
	f.stripe.On(stripefake.Rule{Method: "POST", Path: path, Times: 1, Body: sub(1)})
	if err := f.svc.LeaveWorkspace(f.as("m2"), ws); err != nil {
		t.Fatal(err)
	}
	sent("1")
}
