package model

// The inputs of mutations that call Stripe name the workspace whose
// budget they spend; the @rateLimited directive reads it from here.

// RateLimitWorkspace returns the workspace the mutation spends budget of.
func (i CreatePaymentIntentInput) RateLimitWorkspace() string { return i.WorkspaceID }

// RateLimitWorkspace returns the workspace the mutation spends budget of.
func (i CreateCheckoutSessionInput) RateLimitWorkspace() string { return i.WorkspaceID }

// RateLimitWorkspace returns the workspace the mutation spends budget of.
func (i CreateSubscriptionInput) RateLimitWorkspace() string { return i.WorkspaceID }

// RateLimitWorkspace returns the workspace the mutation spends budget of.
func (i ChangeSubscriptionPlanInput) RateLimitWorkspace() string { return i.WorkspaceID }

// RateLimitWorkspace returns the workspace the mutation spends budget of.
func (i CancelSubscriptionInput) RateLimitWorkspace() string { return i.WorkspaceID }

// RateLimitWorkspace returns the workspace the mutation spends budget of.
func (i ResumeSubscriptionInput) RateLimitWorkspace() string { return i.WorkspaceID }

// RateLimitWorkspace returns the workspace the mutation spends budget of.
func (i DeleteWorkspaceInput) RateLimitWorkspace() string { return i.WorkspaceID }
