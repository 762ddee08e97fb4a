"""Live capture: one collector module per source, each `capture(root, declared) -> Section`."""
