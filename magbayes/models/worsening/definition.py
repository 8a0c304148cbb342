"""What the worsening model is: its name, spec defaults and rules, headline, summary variables."""

from __future__ import annotations

from typing import Any

from magbayes.cohort.tables import SCORES, TREATMENTS
from magbayes.models import blocks
from magbayes.models.base import (
    Headline,
    prior_names,
    shipped_defaults,
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

#: Every key of the spec with its default: the spec file ``models/worsening.toml``.
DEFAULTS: dict[str, Any] = shipped_defaults(NAME)

#: What each key of a spec accepts beyond the type of its default (the shared tables'
#: rules come from :func:`magbayes.models.base.spec_rules`). Prior means are any number;
#: every other prior is a positive scale.
OWN_RULES: dict[str, dict[str, Any]] = {
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
}
SPEC_RULES = spec_rules(DEFAULTS, OWN_RULES)

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
    "beta_rituximab_mean",
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
