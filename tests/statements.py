"""Every Cypher statement constant in graph/, by qualified name."""

from __future__ import annotations

import importlib
import pkgutil

import graph
from graph.driver import Cypher

# Neo4j-only schema statements; FalkorDB creates the same indexes through its own commands
NEO4J_ONLY_MODULES = {"graph.schema_setup"}


def all_statements() -> dict[str, Cypher]:
    found: dict[str, Cypher] = {}
    for module_info in pkgutil.iter_modules(graph.__path__, "graph."):
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if isinstance(value, Cypher) and name.isupper():
                found[f"{module_info.name}.{name}"] = value
    return found
