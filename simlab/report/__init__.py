"""report layer of simlab (see DESIGN.md)."""
