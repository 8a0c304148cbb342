"""What the worsening model is: its name, spec defaults and rules, headline, summary variables."""

from __future__ import annotations

from typing import Any

from magbayes.cohort.tables import SCORES, TREATMENTS
from magbayes.models import blocks
from magbayes.models.base import (
    BASELINE_COVARIATES,
    MODELLED_TREATMENTS,
    Headline,
    prior_names,
    shared_defaults,
    spec_rules,
)
from magbayes.spec_schema import (
    at_least_zero,
    increasing_from_zero,
    list_of,
    number,
    one_of,
    positive,
)

NAME = "worsening"

DEFAULTS: dict[str, Any] = shared_defaults(
    {
        "outcome": {
            "score": "incat",
            "change": 1,
            "baseline": "first",
            "confirmation": "next_visit",
            "follow_up_ends": "last_confirmable_visit",
            "event_time": "interval",
        },
        "baseline_hazard": {"kind": "piecewise", "grid_years": [0.0, 2.0, 4.0, 6.0, 8.0, 12.0]},
        "covariates": {"baseline": BASELINE_COVARIATES},
        "treatments": {
            "modelled": MODELLED_TREATMENTS,
            "exposure": "courses_started",
        },
        "sites": {"pooling": "partial", "parametrisation": "auto"},
        "priors": {
            "baseline_log_hazard_mean": -2.3,
            "baseline_log_hazard_sd": 1.5,
            "weibull_shape_sd": 0.5,
            "weibull_log_scale_mean": 2.3,
            "weibull_log_scale_sd": 1.5,
            "frailty_sd": 0.5,
            "treatment_sd": 1.0,
            "rituximab_sd": 1.0,
            "interaction_sd": 1.0,
            "sural_sd": 1.0,
            "covariate_sd": 1.0,
        },
        "figures": {"rituximab_start_years": 3.0, "horizon_years": 12.0},
    }
)

#: What each key of a spec accepts beyond the type of its default (the shared tables'
#: rules come from :func:`magbayes.models.base.spec_rules`). Prior means are any number;
#: every other prior is a positive scale.
SPEC_RULES = spec_rules(
    DEFAULTS,
    {
        "outcome": {
            "score": one_of(*SCORES),
            "change": positive(),
            "baseline": one_of("first", "best_so_far"),
            "confirmation": one_of("next_visit", "none"),
            "follow_up_ends": one_of("last_confirmable_visit", "last_visit"),
            "event_time": one_of("interval", "detecting_visit"),
        },
        "baseline_hazard": {
            "kind": one_of("piecewise", "weibull"),
            "grid_years": increasing_from_zero(),
        },
        "treatments": {
            "modelled": list_of(one_of(*TREATMENTS), non_empty=False),
            "exposure": one_of("courses_started", "ever"),
        },
        "sites": {
            "pooling": one_of(*blocks.SITE_POOLING),
            "parametrisation": one_of(*blocks.SITE_PARAMETRISATIONS),
        },
        "priors": {
            key: number() if key.endswith("_mean") else positive() for key in prior_names(DEFAULTS)
        },
        "figures": {"rituximab_start_years": at_least_zero(), "horizon_years": positive()},
    },
)

HEADLINE = Headline(
    question=(
        "Does early sural reduction predict a larger reduction in the hazard of confirmed "
        "worsening after rituximab?"
    ),
    contrast_var="beta_rituximab_x_sural",
    main_var="beta_rituximab",
    benefit_sign=-1,
    scale=(
        "difference in log hazard ratio of confirmed worsening for rituximab, "
        "sural-reduced minus sural-preserved"
    ),
)

#: Variables whose posteriors the summary lists.
SUMMARY_VARS = [
    "beta_rituximab",
    "beta_rituximab_x_sural",
    "beta_sural_reduced",
    "beta_treatment",
    "beta_covariate",
    "baseline_log_hazard",
    "weibull_shape",
    "weibull_log_scale",
    "site_log_frailty",
    "site_log_frailty_sd",
    "site_log_frailty_vs_reference",
    "sural_reduced_prevalence",
]
