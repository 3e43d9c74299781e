package billing

// The near cache (cache.Near) keeps, in each replica's memory, what every
// request reads: the plan catalog, a workspace's billing status, and which
// users may see a workspace. This file holds the rule that keeps it
// truthful: every committed write of a workspace or a membership
// invalidates that workspace's group on every replica, whoever wrote it,
// because the hooks sit on the ent client itself (like the privacy rules).
// Status changes also invalidate after the status snapshot is written
// through to Redis (refreshStatus; announce for a run of webhook events),
// and price changes when the price cache drops them (cache.Prices).

import (
	"context"
	"slices"

	"billingapi/auth"
	"billingapi/cache"
	"billingapi/ent"
	"billingapi/ent/hook"

	"github.com/google/uuid"
)

// invalidateOnWrite registers the ent hooks that invalidate near-cache
// groups after each committed workspace or membership write.
func (s *Service) invalidateOnWrite() {
	s.db.Workspace.Use(func(next ent.Mutator) ent.Mutator {
		return hook.WorkspaceFunc(func(ctx context.Context, m *ent.WorkspaceMutation) (ent.Value, error) {
			v, err := next.Mutate(ctx, m)
			if err != nil || m.Op().Is(ent.OpCreate) {
				return v, err // nothing can be cached for a new workspace
			}
			group := cache.AllGroups
			if id, ok := m.ID(); ok && m.Op().Is(ent.OpUpdateOne) {
				group = cache.WorkspaceGroup(id.String())
			}
			tx, _ := m.Tx()
			s.afterCommit(ctx, tx, group)
			return v, nil
		})
	})
	s.db.Membership.Use(func(next ent.Mutator) ent.Mutator {
		return hook.MembershipFunc(func(ctx context.Context, m *ent.MembershipMutation) (ent.Value, error) {
			v, err := next.Mutate(ctx, m)
			if err != nil {
				return v, err
			}
			group := cache.AllGroups
			if ws, ok := m.WorkspaceID(); ok && m.Op().Is(ent.OpCreate) {
				group = cache.WorkspaceGroup(ws.String())
			}
			tx, _ := m.Tx()
			s.afterCommit(ctx, tx, group)
			return v, nil
		})
	})
}

// afterCommit invalidates group once tx commits, or now when the write
// was not in a transaction (it is committed already).
func (s *Service) afterCommit(ctx context.Context, tx *ent.Tx, group string) {
	if tx == nil {
		s.invalidate(ctx, group)
		return
	}
	tx.OnCommit(func(next ent.Committer) ent.Committer {
		return ent.CommitFunc(func(ctx context.Context, tx *ent.Tx) error {
			err := next.Commit(ctx, tx)
			if err == nil {
				s.invalidate(ctx, group)
			}
			return err
		})
	})
}

// invalidate drops near-cache groups on every replica. A failed
// publication is logged: the other replicas' entries then expire by TTL.
func (s *Service) invalidate(ctx context.Context, groups ...string) {
	if err := s.near.Invalidate(context.WithoutCancel(ctx), groups...); err != nil {
		s.log.WarnContext(ctx, "near cache: invalidation not published; other replicas expire their entries by TTL", "groups", groups, "err", err)
	}
}

// VisibleWorkspace is Workspace for read-only queries: a workspace the
// viewer may see, from the near cache when the viewer (a regular user)
// saw it moments ago. Mutations use Workspace, which always reads the
// database.
func (s *Service) VisibleWorkspace(ctx context.Context, id uuid.UUID) (*ent.Workspace, error) {
	v, ok := auth.FromContext(ctx)
	if !ok || !v.RegularUser() {
		return s.Workspace(ctx, id)
	}
	ws, _, err := cache.GetOrLoad(ctx, s.near, cache.WorkspaceGroup(id.String()), "visible:"+v.UserID, shallowCopy,
		func() (*ent.Workspace, bool, error) {
			ws, err := s.Workspace(ctx, id)
			return ws, true, err
		})
	return ws, err
}

// cachedPlans returns the decoded plans of lookupKeys from the near cache
// (under key), or loads them with load and keeps them. Plans that Redis
// does not hold (read while it failed) are not kept: Redis must be
// refilled first, or replicas would disagree once its entries expire.
func (s *Service) cachedPlans(ctx context.Context, key string, lookupKeys int, load func() ([]Plan, bool, error)) ([]Plan, error) {
	plans, hit, err := cache.GetOrLoad(ctx, s.near, cache.PricesGroup, key, slices.Clone[[]Plan], load)
	if hit {
		s.prices.CountHits(lookupKeys)
	}
	return plans, err
}

// shallowCopy returns a copy of *p: a near-cache value is shared, and a
// caller must be free to change the struct it is handed.
func shallowCopy[T any](p *T) *T {
	c := *p
	return &c
}
