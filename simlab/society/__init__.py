"""society layer of simlab (see DESIGN.md)."""
