"""Helpers shared by several test modules (no test module imports another; see
``tests/test_hygiene.py``). Import the submodule you need: ``society`` and ``crash`` need no
torch (the society-only CI leg and spawned workers import them), ``learners`` does.
"""
