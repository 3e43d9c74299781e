package billing

import (
	"context"
	"testing"

	"github.com/google/uuid"
)

// countingBudget counts the spends of each workspace and refuses while
// refuse is set.
type countingBudget struct {
	spent  map[uuid.UUID]int
	refuse bool
}

func (b *countingBudget) SpendWorkspace(_ context.Context, ws uuid.UUID) error {
	if b.refuse {
		return &Error{Code: CodeRateLimited, Message: "Too many requests."}
	}
	b.spent[ws]++
	return nil
}

// A call spends each workspace's budget once however often its methods
// reach for it; a refused spend is not taken for a spent one; and work
// that carries no budget spends nothing.
func TestACallSpendsAWorkspacesBudgetOnce(t *testing.T) {
	if err := spendWorkspaceBudget(context.Background(), uuid.New()); err != nil {
		t.Fatalf("without a budget: %v", err)
	}
	b := &countingBudget{spent: map[uuid.UUID]int{}, refuse: true}
	ctx := WithBudget(context.Background(), b)
	ws, other := uuid.New(), uuid.New()
	if err := spendWorkspaceBudget(ctx, ws); ErrorCode(err) != CodeRateLimited {
		t.Fatalf("refused spend = %v", err)
	}
	b.refuse = false
	for range 3 {
		if err := spendWorkspaceBudget(ctx, ws); err != nil {
			t.Fatal(err)
		}
	}
	if err := spendWorkspaceBudget(ctx, other); err != nil {
		t.Fatal(err)
	}
	if b.spent[ws] != 1 || b.spent[other] != 1 {
		t.Fatalf("spent = %v, want each workspace once", b.spent)
	}
	// Another call has a budget of its own.
	if err := spendWorkspaceBudget(WithBudget(context.Background(), b), ws); err != nil || b.spent[ws] != 2 {
		t.Fatalf("another call: %v, spent %d", err, b.spent[ws])
	}
}
