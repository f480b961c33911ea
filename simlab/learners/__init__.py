"""Learners: the plug-in point. Built-ins register here lazily; others via entry points."""
from simlab.learners.base import Adapted, Budget, Learner, TaskSpec
from simlab.learners.registry import available, learner_class, make_learner, register

for _name, _target in {
    "maml": "simlab.learners.maml:MAML",
    "fomaml": "simlab.learners.maml:FOMAML",
    "metasgd": "simlab.learners.maml:MetaSGD",
    "anil": "simlab.learners.maml:ANIL",
    "reptile": "simlab.learners.maml:Reptile",
    "meta_lstm": "simlab.learners.meta_lstm:MetaLSTM",
    "relation": "simlab.learners.relation:RelationNet",
    "protonet": "simlab.learners.relation:ProtoNet",
    "scratch": "simlab.learners.baselines:Scratch",
    "finetune": "simlab.learners.baselines:PooledFineTune",
    "partial_pooling": "simlab.learners.baselines:PartialPooling",
    "oracle": "simlab.learners.baselines:Oracle",
    "dynamic_mlm": "simlab.learners.dynamic_mlm:DynamicMLM",
}.items():
    register(_name, _target)

__all__ = ["Adapted", "Budget", "Learner", "TaskSpec", "available", "learner_class",
           "make_learner", "register"]
