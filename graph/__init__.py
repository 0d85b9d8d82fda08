"""The only place that speaks Cypher: driver interface, adapters, statements per domain.

Portable Cypher, learnt the hard way (FalkorDB 4.x in falkordblite 0.11 vs Neo4j 5):
- no `EXISTS { }` / `COUNT { }` subqueries in FalkorDB; count with OPTIONAL MATCH + count()
  or `size([(a)-->(b) | 1])`;
- after OPTIONAL MATCH, `WITH x WHERE x IS NULL` wrongly passes rows in FalkorDB: aggregate
  first (`WITH count(x) AS n WHERE n = 0`);
- a pattern comprehension with an undirected relationship between two bound nodes fails in
  FalkorDB's WHERE ("Unable to resolve filtered alias"); use OPTIONAL MATCH + count();
- `MATCH (a), (b)` is a cartesian-product warning for Neo4j's linter: use two MATCH clauses;
- guards lock first (`SET n._lock = true REMOVE n._lock`) so they hold on Neo4j's read
  committed isolation.
"""
