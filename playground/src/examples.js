// The ready example operations, one GraphiQL tab each. They are only the
// starting tabs: GraphiQL keeps the user's own edits in localStorage.

const WORKSPACE = "<workspace id: run MyWorkspaces first>";

export const exampleTabs = [
  {
    query: `# The plan catalog (public: no token needed).
query Plans {
  plans {
    lookupKey
    unitAmount
    currency
    interval
    product {
      name
      features
    }
  }
}
`,
  },
  {
    query: `# Who the token is, and its workspaces.
query MyWorkspaces {
  me {
    id
    email
    workspaces {
      edges {
        node {
          id
          name
          viewerRole
          access {
            level
          }
        }
      }
    }
  }
}
`,
  },
  {
    query: `# A hosted Stripe Checkout page for a plan (workspace
# owners and admins). In the variables, set a workspace id
# (from MyWorkspaces) and a lookup key (from Plans).
mutation CreateCheckoutSession($input: CreateCheckoutSessionInput!) {
  createCheckoutSession(input: $input) {
    sessionId
    checkoutUrl
    checkoutSession {
      id
      status
      plan
      quantity
    }
  }
}
`,
    variables: JSON.stringify(
      {
        input: {
          workspaceId: WORKSPACE,
          lookupKey: "pro_monthly",
          mode: "SUBSCRIPTION",
          quantity: 1,
          idempotencyKey: "playground-1",
        },
      },
      null,
      2,
    ),
  },
  {
    query: `# Billing events of a workspace, live over the websocket.
# Set the workspace id in the variables and run; then send
# a webhook (README: "Webhooks in development"). The stop
# button unsubscribes.
subscription BillingEvents($workspaceId: ID!) {
  billingEvents(workspaceId: $workspaceId) {
    eventId
    type
    occurredAt
    payment {
      status
      amount
    }
    subscription {
      status
    }
  }
}
`,
    variables: JSON.stringify({ workspaceId: WORKSPACE }, null, 2),
  },
];
