package auth

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Role is what a user may do in one workspace.
type Role string

// The roles of a workspace membership, from most to least powerful.
const (
	RoleOwner  Role = "owner"  // manages billing and members; created the workspace
	RoleAdmin  Role = "admin"  // manages billing and members
	RoleMember Role = "member" // reads
)

// Values lists the stored role values; ent uses it for the enum column.
func (Role) Values() []string {
	return []string{string(RoleOwner), string(RoleAdmin), string(RoleMember)}
}

// ManagesBilling reports whether the role may pay, subscribe and add members.
func (r Role) ManagesBilling() bool { return r == RoleOwner || r == RoleAdmin }

// MarshalGQL writes the role as an UPPER_SNAKE GraphQL enum value.
func (r Role) MarshalGQL(w io.Writer) {
	_, _ = io.WriteString(w, strconv.Quote(strings.ToUpper(string(r))))
}

// UnmarshalGQL reads an UPPER_SNAKE GraphQL enum value; it refuses unknown roles.
func (r *Role) UnmarshalGQL(v any) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("role must be a string")
	}
	for _, known := range r.Values() {
		if strings.EqualFold(s, known) && s == strings.ToUpper(s) {
			*r = Role(known)
			return nil
		}
	}
	return fmt.Errorf("%q is not a valid Role", s)
}
