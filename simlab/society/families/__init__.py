"""The dynamics families: one Mesa model per published mechanism, each a ``Society`` subclass.

``opinion`` (bounded confidence with anchoring and media), ``contagion`` (threshold adoption
with a Bass push), ``coevolving`` (Holme & Newman's rewiring voter model) and ``epidemic``
(SIR with spreading awareness). They are found by name through ``simlab.society.FAMILIES`` and
imported only when a scenario asks for one, so this package imports nothing itself.
"""
