"""Development tools: ``python -m tools.import_graph`` prints the package import graph and checks its rules."""
