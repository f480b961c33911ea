"""Real surveys into the same TaskStream as the simulated societies.

A survey table (file, package data set or DataFrame) becomes a stream in steps, one module
each: :mod:`~simlab.survey.schema` (the ``[data]`` section: which column plays which role),
:mod:`~simlab.survey.read` (the table and what identifies it), :mod:`~simlab.survey.clean`
(missing codes, numbers written as text, the time order), :mod:`~simlab.survey.checks`
(errors and warnings a user must see: missing columns, weights, leakage),
:mod:`~simlab.survey.design` (what a wave is), :mod:`~simlab.survey.encode` (features, target,
the one scaling), :mod:`~simlab.survey.census` (census margins for MRP),
:mod:`~simlab.survey.ledger` (where every respondent went) and :mod:`~simlab.survey.stream`
(cells -> tasks). A layer just above ``simlab.tasks``: it needs nothing of the societies or the
learners; ``simlab.experiment.survey_scenario`` makes it a scenario.
"""
from simlab.survey.census import encode_census, read_census
from simlab.survey.checks import SurveyWarning, warn_survey
from simlab.survey.design import prepared_rows, respondents
from simlab.survey.encode import Encoded, encode, feature_kinds
from simlab.survey.ledger import LEDGER_COLUMNS, build_ledger, ledger_table, ledger_text
from simlab.survey.read import FRAME_SOURCE, data_digest, frame_digest, read_survey
from simlab.survey.schema import CensusMargins, SurveyData
from simlab.survey.stream import survey_stream

__all__ = ["FRAME_SOURCE", "LEDGER_COLUMNS", "CensusMargins", "Encoded", "SurveyData",
           "SurveyWarning", "build_ledger", "data_digest", "encode", "encode_census",
           "feature_kinds", "frame_digest", "ledger_table", "ledger_text", "prepared_rows",
           "read_census", "read_survey", "respondents", "survey_stream", "warn_survey"]
