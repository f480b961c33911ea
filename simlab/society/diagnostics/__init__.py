"""What a society can tell about itself, beside the stream: measurements, not dynamics.

``ceiling`` (the observable ceiling a perfect learner could reach from the questionnaire),
``headroom`` (how much a flexible model beats a hierarchical GLM on a large sample, for
``simlab stream --headroom``) and ``reporters`` (per-tick model reporters that the report
draws under the learners' scores). Nothing is imported here: ``society.run`` imports the
ceiling and the reporters while ``headroom`` imports ``run``, so a package-level import would
be a cycle.
"""
