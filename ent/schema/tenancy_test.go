package schema_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"billingapi/auth"
	"billingapi/ent"
	"billingapi/ent/membership"
	"billingapi/ent/predicate"
	"billingapi/ent/privacy"
	_ "billingapi/ent/runtime" // privacy policies live in the runtime registration
	"billingapi/ent/workspace"
	"billingapi/internal/database"
	"billingapi/internal/testenv"

	"github.com/google/uuid"
)

// seeded is two users, each the owner of their own workspace.
type seeded struct {
	db           *ent.Client
	alice, bob   context.Context
	wsA, wsB     uuid.UUID
	anonymous    context.Context
	systemForA   context.Context
	platformAdmn context.Context
}

// seed opens the database at url and creates alice/wsA and bob/wsB through
// the privacy rules, as the service does.
func seed(t *testing.T, url string) seeded {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	store, err := database.Open(ctx, url, database.Options{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = store.Close() })
	s := seeded{
		db:           store.Client,
		alice:        auth.NewContext(ctx, auth.Viewer{UserID: "alice"}),
		bob:          auth.NewContext(ctx, auth.Viewer{UserID: "bob"}),
		anonymous:    ctx,
		platformAdmn: auth.NewContext(ctx, auth.Viewer{UserID: "root", Admin: true}),
	}
	s.wsA = s.createOwned(t, s.alice, "alice", "A")
	s.wsB = s.createOwned(t, s.bob, "bob", "B")
	s.systemForA = auth.NewContext(ctx, auth.SystemViewer(s.wsA))
	return s
}

func (s seeded) createOwned(t *testing.T, ctx context.Context, userID, name string) uuid.UUID {
	t.Helper()
	if err := s.db.User.Create().SetID(userID).Exec(ctx); err != nil {
		t.Fatalf("create user %s: %v", userID, err)
	}
	ws, err := s.db.Workspace.Create().SetName(name).Save(ctx)
	if err != nil {
		t.Fatalf("create workspace: %v", err)
	}
	if err := s.db.Membership.Create().SetWorkspaceID(ws.ID).SetUserID(userID).SetRole(auth.RoleOwner).Exec(ctx); err != nil {
		t.Fatalf("create owner membership: %v", err)
	}
	return ws.ID
}

func TestTenancyInTheDataLayer(t *testing.T) {
	for _, backend := range testenv.Databases() {
		t.Run(backend.Name, func(t *testing.T) {
			s := seed(t, backend.URL(t))

			t.Run("ViewerSeesOnlyOwnWorkspaces", func(t *testing.T) {
				got, err := s.db.Workspace.Query().IDs(s.bob)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != 1 || got[0] != s.wsB {
					t.Fatalf("bob sees %v, want only %v", got, s.wsB)
				}
			})
			t.Run("ForeignWorkspaceByIDIsNotFound", func(t *testing.T) {
				_, err := s.db.Workspace.Get(s.bob, s.wsA)
				if !ent.IsNotFound(err) {
					t.Fatalf("bob gets wsA: err = %v, want not found", err)
				}
			})
			t.Run("ExplicitPredicateCannotWidenTheScope", func(t *testing.T) {
				n, err := s.db.Membership.Query().Where(membership.WorkspaceID(s.wsA)).Count(s.bob)
				if err != nil || n != 0 {
					t.Fatalf("bob counts %d memberships of wsA (err %v), want 0", n, err)
				}
				n, err = s.db.Workspace.Query().Where(workspace.Name("A")).Count(s.bob)
				if err != nil || n != 0 {
					t.Fatalf("bob counts %d workspaces named A (err %v), want 0", n, err)
				}
			})
			t.Run("UsersOutsideSharedWorkspacesAreHidden", func(t *testing.T) {
				ids, err := s.db.User.Query().IDs(s.bob)
				if err != nil {
					t.Fatal(err)
				}
				if len(ids) != 1 || ids[0] != "bob" {
					t.Fatalf("bob sees users %v, want [bob]", ids)
				}
			})
			t.Run("EdgeTraversalStaysInScope", func(t *testing.T) {
				me, err := s.db.User.Get(s.bob, "bob")
				if err != nil {
					t.Fatal(err)
				}
				// Even walking from bob's own row, alice's workspace stays hidden.
				ids, err := me.QueryMemberships().QueryWorkspace().QueryMemberships().QueryUser().IDs(s.bob)
				if err != nil {
					t.Fatal(err)
				}
				if len(ids) != 1 || ids[0] != "bob" {
					t.Fatalf("traversal reaches %v", ids)
				}
			})
			t.Run("NoViewerIsDenied", func(t *testing.T) {
				_, err := s.db.Workspace.Query().All(s.anonymous)
				if !errors.Is(err, privacy.Deny) {
					t.Fatalf("anonymous query: err = %v, want privacy deny", err)
				}
				_, err = s.db.Workspace.Create().SetName("x").Save(s.anonymous)
				if !errors.Is(err, privacy.Deny) {
					t.Fatalf("anonymous create: err = %v, want privacy deny", err)
				}
			})
			t.Run("SystemViewerIsScopedToOneWorkspace", func(t *testing.T) {
				ids, err := s.db.Workspace.Query().IDs(s.systemForA)
				if err != nil || len(ids) != 1 || ids[0] != s.wsA {
					t.Fatalf("system viewer for A sees %v (err %v)", ids, err)
				}
				if _, err := s.db.Workspace.Get(s.systemForA, s.wsB); !ent.IsNotFound(err) {
					t.Fatalf("system viewer for A gets wsB: %v", err)
				}
				if _, err := s.db.Workspace.Create().SetName("x").Save(s.systemForA); !errors.Is(err, privacy.Deny) {
					t.Fatalf("system viewer creates workspace: %v", err)
				}
			})
			t.Run("PlatformAdminReadsAllButWritesNothingForeign", func(t *testing.T) {
				n, err := s.db.Workspace.Query().Count(s.platformAdmn)
				if err != nil || n != 2 {
					t.Fatalf("admin counts %d (err %v), want 2", n, err)
				}
				err = s.db.Workspace.UpdateOneID(s.wsA).SetName("pwned").Exec(s.platformAdmn)
				if err == nil {
					t.Fatal("platform admin renamed a workspace it is not a member of")
				}
			})
			t.Run("ForeignUpdateAndDeleteTouchNothing", func(t *testing.T) {
				if err := s.db.Workspace.UpdateOneID(s.wsA).SetName("pwned").Exec(s.bob); !ent.IsNotFound(err) {
					t.Fatalf("bob renames wsA: err = %v, want not found", err)
				}
				n, err := s.db.Workspace.Update().SetName("pwned").Save(s.bob)
				if err != nil || n != 1 {
					t.Fatalf("bob's bulk rename touched %d rows (err %v), want only his own", n, err)
				}
				if err := s.db.Workspace.DeleteOneID(s.wsA).Exec(s.bob); !ent.IsNotFound(err) {
					t.Fatalf("bob deletes wsA: err = %v, want not found", err)
				}
				if _, err := s.db.Membership.Delete().Where(membership.WorkspaceID(s.wsA)).Exec(s.bob); err != nil {
					t.Fatalf("bulk delete: %v", err)
				}
				a, err := s.db.Workspace.Get(s.alice, s.wsA)
				if err != nil || a.Name != "A" {
					t.Fatalf("wsA after bob's attempts: %+v, %v", a, err)
				}
				if n, _ := s.db.Membership.Query().Where(membership.WorkspaceID(s.wsA)).Count(s.alice); n != 1 {
					t.Fatalf("wsA has %d memberships after bob's delete, want 1", n)
				}
			})
			t.Run("CannotJoinForeignWorkspace", func(t *testing.T) {
				for _, role := range []auth.Role{auth.RoleOwner, auth.RoleAdmin, auth.RoleMember} {
					err := s.db.Membership.Create().SetWorkspaceID(s.wsA).SetUserID("bob").SetRole(role).Exec(s.bob)
					if !errors.Is(err, privacy.Deny) {
						t.Fatalf("bob joins wsA as %s: err = %v, want deny", role, err)
					}
				}
			})
			t.Run("MemberCannotAddMembersAdminCannotAddOwners", func(t *testing.T) {
				carol := auth.NewContext(s.anonymousCtx(), auth.Viewer{UserID: "carol"})
				dave := auth.NewContext(s.anonymousCtx(), auth.Viewer{UserID: "dave"})
				for _, u := range []context.Context{carol, dave} {
					v, _ := auth.FromContext(u)
					if err := s.db.User.Create().SetID(v.UserID).Exec(u); err != nil {
						t.Fatal(err)
					}
				}
				mustMember(t, s.db, s.alice, s.wsA, "carol", auth.RoleMember)
				mustMember(t, s.db, s.alice, s.wsA, "dave", auth.RoleAdmin)
				if err := s.db.Membership.Create().SetWorkspaceID(s.wsA).SetUserID("bob").SetRole(auth.RoleMember).Exec(carol); !errors.Is(err, privacy.Deny) {
					t.Fatalf("member adds member: %v", err)
				}
				if err := s.db.Membership.Create().SetWorkspaceID(s.wsA).SetUserID("bob").SetRole(auth.RoleOwner).Exec(dave); !errors.Is(err, privacy.Deny) {
					t.Fatalf("admin adds owner: %v", err)
				}
				if err := s.db.Membership.Create().SetWorkspaceID(s.wsA).SetUserID("bob").SetRole(auth.RoleMember).Exec(dave); err != nil {
					t.Fatalf("admin adds member: %v", err)
				}
			})
			t.Run("AdminCannotDemoteRemoveOrMakeOwners", func(t *testing.T) {
				alice2 := auth.NewContext(s.anonymousCtx(), auth.Viewer{UserID: "alice2"})
				ws := s.createOwned(t, alice2, "alice2", "A2")
				erin := auth.NewContext(s.anonymousCtx(), auth.Viewer{UserID: "erin"})
				for _, u := range []string{"erin", "frank"} {
					if err := s.db.User.Create().SetID(u).Exec(auth.NewContext(s.anonymousCtx(), auth.Viewer{UserID: u})); err != nil {
						t.Fatal(err)
					}
				}
				mustMember(t, s.db, alice2, ws, "erin", auth.RoleAdmin)
				mustMember(t, s.db, alice2, ws, "frank", auth.RoleMember)
				of := func(user string) []predicate.Membership {
					return []predicate.Membership{membership.WorkspaceID(ws), membership.UserID(user)}
				}
				// An admin's change reaches no owner's row, and makes no owner.
				if n, err := s.db.Membership.Update().Where(of("alice2")...).SetRole(auth.RoleMember).Save(erin); err != nil || n != 0 {
					t.Fatalf("admin demotes the owner: %d rows, %v; want none", n, err)
				}
				if n, err := s.db.Membership.Delete().Where(of("alice2")...).Exec(erin); err != nil || n != 0 {
					t.Fatalf("admin removes the owner: %d rows, %v; want none", n, err)
				}
				if n, err := s.db.Membership.Update().Where(of("frank")...).SetRole(auth.RoleOwner).Save(erin); err != nil || n != 0 {
					t.Fatalf("admin makes a member owner: %d rows, %v; want none", n, err)
				}
				if n, err := s.db.Membership.Update().Where(membership.WorkspaceID(ws)).SetRole(auth.RoleAdmin).Save(erin); err != nil || n != 2 {
					t.Fatalf("admin sets every role of the workspace: %d rows, %v; want the two that are not an owner's", n, err)
				}
				// The admin still manages the others; the owner manages all.
				if n, err := s.db.Membership.Update().Where(of("frank")...).SetRole(auth.RoleMember).Save(erin); err != nil || n != 1 {
					t.Fatalf("admin changes a member: %d rows, %v", n, err)
				}
				if n, err := s.db.Membership.Update().Where(of("frank")...).SetRole(auth.RoleOwner).Save(alice2); err != nil || n != 1 {
					t.Fatalf("owner makes a member owner: %d rows, %v", n, err)
				}
				if n, err := s.db.Membership.Delete().Where(of("frank")...).Exec(erin); err != nil || n != 0 {
					t.Fatalf("admin removes the new owner: %d rows, %v; want none", n, err)
				}
				if n, err := s.db.Membership.Delete().Where(of("frank")...).Exec(alice2); err != nil || n != 1 {
					t.Fatalf("owner removes an owner: %d rows, %v", n, err)
				}
				roles := map[string]auth.Role{}
				all, err := s.db.Membership.Query().Where(membership.WorkspaceID(ws)).All(alice2)
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range all {
					roles[m.UserID] = m.Role
				}
				if fmt.Sprint(roles) != "map[alice2:owner erin:admin]" {
					t.Fatalf("memberships left: %v", roles)
				}
			})
			t.Run("UserWritesOnlyOwnRow", func(t *testing.T) {
				if err := s.db.User.UpdateOneID("alice").SetName("x").Exec(s.bob); !errors.Is(err, privacy.Deny) {
					t.Fatalf("bob renames alice: %v", err)
				}
				if err := s.db.User.Create().SetID("mallory").Exec(s.bob); !errors.Is(err, privacy.Deny) {
					t.Fatalf("bob creates another user: %v", err)
				}
				if err := s.db.User.UpdateOneID("bob").SetName("Bob").Exec(s.bob); err != nil {
					t.Fatalf("bob renames himself: %v", err)
				}
			})
		})
	}
}

func (s seeded) anonymousCtx() context.Context { return s.anonymous }

func mustMember(t *testing.T, db *ent.Client, ctx context.Context, ws uuid.UUID, user string, role auth.Role) {
	t.Helper()
	if err := db.Membership.Create().SetWorkspaceID(ws).SetUserID(user).SetRole(role).Exec(ctx); err != nil {
		t.Fatalf("add %s as %s: %v", user, role, err)
	}
}
