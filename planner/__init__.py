"""The decide layer: the instance catalog, billing rules, the integer program, ranked plans."""
