package main

import (
	"strings"
	"testing"

	"billingapi/internal/testenv"
)

// TestTenancyOverGraphQL tries every query and mutation of the foundation
// as a user of another workspace, as a member where an owner or admin is
// needed, and anonymously.
func TestTenancyOverGraphQL(t *testing.T) {
	for _, backend := range testenv.Databases() {
		t.Run(backend.Name, func(t *testing.T) {
			s := startServer(t, backend.URL(t), nil)
			alice, bob := s.token(t, "alice", false), s.token(t, "bob", false)
			carol, dave := s.token(t, "carol", false), s.token(t, "dave", false)
			wsA := s.createWorkspace(t, alice, "Alice Inc")
			wsB := s.createWorkspace(t, bob, "Bob Ltd")
			if r := s.addMember(t, alice, wsA, "carol", "MEMBER"); r.Code() != "" {
				t.Fatalf("alice adds carol: %s", r.Raw)
			}
			if r := s.addMember(t, alice, wsA, "dave", "ADMIN"); r.Code() != "" {
				t.Fatalf("alice adds dave: %s", r.Raw)
			}

			workspaceQuery := `query($id: ID!) { workspace(id: $id) { id name members { totalCount edges { node { user { id email } } } } } }`
			refusals := []struct {
				name, token, query string
				vars               map[string]any
				code               string
			}{
				{"ForeignWorkspaceIsNotFound", bob, workspaceQuery, map[string]any{"id": wsA}, "NOT_FOUND"},
				{"MissingWorkspaceIsNotFound", bob, workspaceQuery, map[string]any{"id": "8d7b9f39-5ad7-4bd0-a0a7-42c1b8a0c6a1"}, "NOT_FOUND"},
				{"MalformedIDIsNotFound", bob, workspaceQuery, map[string]any{"id": "not-a-uuid"}, "NOT_FOUND"},
				{"AnonymousWorkspaceIsUnauthenticated", "", workspaceQuery, map[string]any{"id": wsA}, "UNAUTHENTICATED"},
				{"AnonymousMeIsUnauthenticated", "", `{ me { id } }`, nil, "UNAUTHENTICATED"},
				{"AnonymousCreateWorkspaceIsUnauthenticated", "", `mutation { createWorkspace(input: {name: "x"}) { id } }`, nil, "UNAUTHENTICATED"},
				{"EmptyWorkspaceNameIsBadInput", bob, `mutation { createWorkspace(input: {name: "   "}) { id } }`, nil, "BAD_USER_INPUT"},
				{"LongWorkspaceNameIsBadInput", bob, `mutation($n: String!) { createWorkspace(input: {name: $n}) { id } }`, map[string]any{"n": strings.Repeat("x", 101)}, "BAD_USER_INPUT"},
			}
			for _, tc := range refusals {
				t.Run(tc.name, func(t *testing.T) {
					r := s.gql(t, tc.token, tc.query, tc.vars)
					if r.Code() != tc.code {
						t.Fatalf("code = %q, want %q: %s", r.Code(), tc.code, r.Raw)
					}
					if strings.Contains(r.Raw, "Alice Inc") || strings.Contains(r.Raw, "alice@") {
						t.Fatalf("response leaks alice's data: %s", r.Raw)
					}
				})
			}

			memberRefusals := []struct {
				name, token, ws, user, role, code string
			}{
				{"ForeignUserCannotAddMember", bob, wsA, "bob", "MEMBER", "NOT_FOUND"},
				{"ForeignUserCannotMakeHimselfOwner", bob, wsA, "bob", "OWNER", "NOT_FOUND"},
				{"MemberCannotAddMember", carol, wsA, "erin", "MEMBER", "FORBIDDEN"},
				{"AdminCannotAddOwner", dave, wsA, "erin", "OWNER", "FORBIDDEN"},
				{"AnonymousCannotAddMember", "", wsA, "erin", "MEMBER", "UNAUTHENTICATED"},
				{"DuplicateMemberIsBadInput", alice, wsA, "carol", "MEMBER", "BAD_USER_INPUT"},
				{"MalformedWorkspaceIsNotFound", alice, "nope", "erin", "MEMBER", "NOT_FOUND"},
			}
			for _, tc := range memberRefusals {
				t.Run(tc.name, func(t *testing.T) {
					r := s.addMember(t, tc.token, tc.ws, tc.user, tc.role)
					if r.Code() != tc.code {
						t.Fatalf("code = %q, want %q: %s", r.Code(), tc.code, r.Raw)
					}
				})
			}

			t.Run("NothingWasAddedByRefusedCalls", func(t *testing.T) {
				var out struct {
					Workspace struct {
						Members struct{ TotalCount int }
					}
				}
				s.gql(t, alice, workspaceQuery, map[string]any{"id": wsA}).Decode(t, &out)
				if out.Workspace.Members.TotalCount != 3 {
					t.Fatalf("wsA has %d members, want 3 (alice, carol, dave)", out.Workspace.Members.TotalCount)
				}
			})
			t.Run("AdminCanAddMember", func(t *testing.T) {
				if r := s.addMember(t, dave, wsA, "erin", "MEMBER"); r.Code() != "" {
					t.Fatalf("dave adds erin: %s", r.Raw)
				}
			})
			t.Run("MeListsOnlyOwnWorkspaces", func(t *testing.T) {
				var out struct {
					Me struct {
						ID         string
						Workspaces struct {
							TotalCount int
							Edges      []struct{ Node struct{ ID string } }
						}
					}
				}
				s.gql(t, bob, `{ me { id workspaces { totalCount edges { node { id } } } } }`, nil).Decode(t, &out)
				if out.Me.ID != "bob" || out.Me.Workspaces.TotalCount != 1 || out.Me.Workspaces.Edges[0].Node.ID != wsB {
					t.Fatalf("bob's me = %+v, want only %s", out.Me, wsB)
				}
			})
			t.Run("MemberSeesOtherMembersOfSharedWorkspaceOnly", func(t *testing.T) {
				var out struct {
					Workspace struct {
						ViewerRole string
						Members    struct {
							Edges []struct {
								Node struct {
									User struct {
										ID         string
										Workspaces struct{ TotalCount int }
									}
								}
							}
						}
					}
				}
				// carol walks to alice's row and asks for alice's workspaces:
				// only the one they share is visible.
				s.gql(t, carol, `query($id: ID!) { workspace(id: $id) { viewerRole members(first: 10) { edges { node { user { id workspaces(first: 10) { totalCount } } } } } } }`,
					map[string]any{"id": wsA}).Decode(t, &out)
				if out.Workspace.ViewerRole != "MEMBER" {
					t.Fatalf("carol's role = %q", out.Workspace.ViewerRole)
				}
				for _, e := range out.Workspace.Members.Edges {
					if e.Node.User.Workspaces.TotalCount != 1 {
						t.Fatalf("carol sees %d workspaces of %s, want 1", e.Node.User.Workspaces.TotalCount, e.Node.User.ID)
					}
				}
			})
		})
	}
}
