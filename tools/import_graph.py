"""The project's package import graph, and the rules it must keep.

    python -m tools.import_graph          # prints each package's imports; exits 1 if a rule is broken

Rules (``violations`` returns every break, the import-graph test asserts there is none):

- **Layers.** Every import between two of the project's packages points down :data:`LAYERS`: a package
  imports only packages of lower layers. Two packages of one layer never import each other, so there
  is no cycle, and ``training`` and ``evaluation`` stay independent of each other.
- **No framework in ``modules/``.** The plain torch modules import neither Lightning nor the config
  system (:data:`FORBIDDEN_IN`): they are built from their own option dataclasses and run anywhere.

Every import counts, also one inside a function or under ``if TYPE_CHECKING``: a late import is
still a dependency. The scripts at the top level (thin shells of ``anyquantile.cli``) may import anything.
Installed, the packages are ``anyquantile.<package>``; the folder ``anyquantile/`` itself is a package
here (the API, the command line), above everything it offers.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Lower numbers are lower layers; a package may import only packages of lower layers.
LAYERS: dict[str, int] = {
    "dataset": 0,  # series, windows, batches, calendar; knows nothing about models
    "modules": 0,  # plain torch networks, losses, samplers, each with its option dataclass
    "model": 1,  # the LightningModule, metrics and the one scoring path
    "baselines": 2,  # reference forecasters: seasonal naive, neuralforecast, the forecaster protocol
    "experiment": 3,  # the config schema, building data and models from it, loading checkpoints
    "training": 4,  # fitting: train(cfg)
    "evaluation": 4,  # scoring checkpoints: metrics.json, forecasts, dashboard, references
    "inference": 4,  # forecasts of the hours after the data, for production
    "anyquantile": 5,  # the installed package's face: the Python API, the command line, serving, export
    "benchmarks": 5,  # contenders and comparisons (train and evaluate)
    "analysis": 5,  # the attention study
    "tools": 6,  # development tools such as this one
}
# The packages that install under anyquantile (pyproject.toml): imported as anyquantile.<package>, never bare,
# since a bare ``model`` exists in a checkout but not in site-packages.
INSTALLED = ("baselines", "dataset", "evaluation", "experiment", "inference", "model", "modules", "training")
FORBIDDEN_IN: dict[str, tuple[str, ...]] = {
    "modules": ("lightning", "pytorch_lightning", "lightning_fabric", "hydra", "omegaconf"),
}


@dataclass(frozen=True)
class Import:
    source: str  # the importing file, relative to the repository
    package: str  # the importing package
    target: str  # the imported project package (``anyquantile.model.x`` -> ``model``), or top-level name
    line: int
    module: str = ""  # the imported module as written


def imports(repo: Path = REPO) -> list[Import]:
    """Every import statement in the project's packages, with the top-level name it imports."""
    found = []
    for package in LAYERS:
        for path in sorted((repo / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    where = str(path.relative_to(repo))
                    found.append(Import(where, package, imported_package(name), node.lineno, name))
    return found


def imported_package(module: str) -> str:
    """The project package a module belongs to: installed, the repository's folders are subpackages of
    ``anyquantile`` (``anyquantile.model.forecaster`` -> ``model``); any other module's top-level name."""
    parts = module.split(".")
    if parts[0] == "anyquantile" and len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    return parts[0]


def package_edges(found: list[Import]) -> dict[str, set[str]]:
    """package -> the other project packages it imports."""
    edges: dict[str, set[str]] = {package: set() for package in LAYERS}
    for item in found:
        if item.target in LAYERS and item.target != item.package:
            edges[item.package].add(item.target)
    return edges


def violations(found: list[Import], layers: dict[str, int] = LAYERS) -> list[str]:
    """One line per import that breaks a rule (empty when the graph is clean)."""
    problems = []
    for item in found:
        where = f"{item.source}:{item.line}"
        if item.target in layers and item.target != item.package and layers[item.target] >= layers[item.package]:
            relation = "the same layer as" if layers[item.target] == layers[item.package] else "a higher layer than"
            problems.append(f"{where}: {item.package} imports {item.target}, {relation} itself")
        if item.target in FORBIDDEN_IN.get(item.package, ()):
            problems.append(f"{where}: {item.package} must not import {item.target}")
        if item.module.split(".")[0] in INSTALLED:
            bare = item.module
            problems.append(f"{where}: import anyquantile.{bare}, not {bare} (installed, it is not there)")
    return problems


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle of the package graph, each as the packages along it (first = last)."""
    found: list[list[str]] = []

    def visit(path: list[str]) -> None:
        for target in sorted(edges.get(path[-1], ())):
            if target == path[0]:
                if path[0] == min(path):  # report each cycle once, from its smallest name
                    found.append([*path, target])
            elif target not in path:
                visit([*path, target])

    for start in sorted(edges):
        visit([start])
    return found


def main() -> int:
    found = imports()
    edges = package_edges(found)
    for package in sorted(LAYERS, key=lambda name: (LAYERS[name], name)):
        targets = ", ".join(sorted(edges[package], key=lambda name: (LAYERS[name], name))) or "-"
        print(f"layer {LAYERS[package]}  {package:12s} -> {targets}")
    problems = violations(found) + [" -> ".join(cycle) + ": a cycle" for cycle in cycles(edges)]
    for problem in problems:
        print(problem, file=sys.stderr)
    print("no cycle; every import points to a lower layer" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
