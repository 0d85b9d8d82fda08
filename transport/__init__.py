"""How clients reach the schema: the GraphQL controller (HTTP and graphql-transport-ws)."""
