"""evaluation layer of simlab (see DESIGN.md)."""
