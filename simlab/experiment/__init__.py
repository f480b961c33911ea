"""experiment layer of simlab (see DESIGN.md)."""
