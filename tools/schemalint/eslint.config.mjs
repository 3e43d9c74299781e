// The schema linter's rules: every schema rule of graphql-eslint
// (flat/schema-all and flat/schema-relay), with the changes below, each
// with its reason. It lints the printed schema, ../../schema.graphql
// (make generate writes it), which holds every type whole: a description
// written on a field of an `extend type` is checked where the type is.
// Run it with `make lint-schema`; README.md says more.
import path from 'node:path';
import graphql from '@graphql-eslint/eslint-plugin';

const root = path.resolve(import.meta.dirname, '../..');

export default [
  {
    files: ['schema.graphql'],
    languageOptions: {
      parser: graphql.parser,
      // Rules that need the whole schema (unreachable types, Relay shapes)
      // read it from the same file.
      parserOptions: { graphQLConfig: { schema: path.join(root, 'schema.graphql') } },
    },
    plugins: { '@graphql-eslint': graphql },
    rules: {
      ...graphql.configs['flat/schema-all'].rules,
      ...graphql.configs['flat/schema-relay'].rules,

      // Kept, and widened: the recommended setting asks a description of
      // types, directives and root fields only. An SPA developer reads
      // every field, argument, input field and enum value in their editor,
      // so each of them needs one too.
      '@graphql-eslint/require-description': ['error', {
        types: true,
        rootField: true,
        DirectiveDefinition: true,
        FieldDefinition: true,
        InputValueDefinition: true,
        EnumValueDefinition: true,
      }],

      // Off: fields, enum values and arguments are in the order that
      // reads best (an id first, a lifecycle's statuses in the order they
      // happen, a connection's after/first/before/last together). The
      // printed file already orders types and directives by name.
      '@graphql-eslint/alphabetize': 'off',

      // Off: these would rename or retype fields clients already call, an
      // API change, not documentation. The invitation mutations share one
      // InvitationInput and the self-service mutations take plain
      // arguments (input-name); createBillingPortalSession returns the
      // portal's URL as a String (no-scalar-result-type-on-mutation);
      // mutations return the object they changed, not a payload with a
      // Query field (require-field-of-type-query-in-mutation-result); and
      // root fields are non-null where an answer always comes or the
      // call fails (require-nullable-result-in-root).
      '@graphql-eslint/input-name': 'off',
      '@graphql-eslint/no-scalar-result-type-on-mutation': 'off',
      '@graphql-eslint/require-field-of-type-query-in-mutation-result': 'off',
      '@graphql-eslint/require-nullable-result-in-root': 'off',

      // Off: the "all" setting uses it to forbid mutations and
      // subscriptions outright; this API has both on purpose.
      '@graphql-eslint/no-root-type': 'off',

      // Off: many of our object types are values, not entities (a plan's
      // price, a discount, the access a status grants, an upcoming
      // invoice, a mutation's payload) and have no id of their own; a
      // client caches them under the object that holds them.
      '@graphql-eslint/strict-id-in-types': 'off',

      // Kept, with two options changed: a connection's nodes do not
      // implement a Node interface (the API has no node(id:) root field to
      // refetch them by), so edges are not asked to return one; and short,
      // bounded lists (a plan's features, the catalog, a workspace's cards,
      // a payment's refunds) stay plain lists: only histories that grow
      // without bound are connections.
      '@graphql-eslint/relay-edge-types': ['error', { shouldImplementNode: false, listTypeCanWrapOnlyEdgeType: false }],

      // Off: it flags Invoice.invoicePdf (Stripe's own name for the field)
      // and Refund.refundedBy (a verb, not a prefix); renaming either is an
      // API change.
      '@graphql-eslint/no-typename-prefix': 'off',
    },
  },
];
