"""The joint model's definition: what the pipeline reads (``magbayes fit joint``).

The trajectory's parts (headline, effects, refit in other coordinates, starting values) are
the progression model's; the event part adds its own parameters, effects and words.
"""

from __future__ import annotations

from typing import Any

from magbayes.labels import Effect, score_name, vector_effects
from magbayes.models import progression
from magbayes.models.base import ModelDefinition, ModelFigure, prior_names
from magbayes.models.joint import cohort_model, figures, predictions, report, sbc
from magbayes.models.joint.events import EVENT_REASONS
from magbayes.spec_schema import increasing_from_zero, one_of, positive, positive_integer

#: Options of the joint model's own keys; the trajectory's are the progression model's.
OWN_RULES: dict[str, dict[str, Any]] = {
    **{k: v for k, v in progression.OWN_RULES.items() if k != "priors"},
    "event": {
        "kind": one_of(*EVENT_REASONS),
        "baseline": one_of(*cohort_model.BASELINES),
        "grid_years": increasing_from_zero(),
        "quadrature_nodes": positive_integer(),
        "association": one_of(*cohort_model.ASSOCIATIONS),
    },
    "priors": {
        key: positive() for key in prior_names(cohort_model.DEFAULTS) if not key.endswith("_mean")
    },
}

#: The event part's parameters, after the trajectory's in the summary.
EVENT_VARS = (
    "association",
    "association_slope",
    "event_rituximab",
    "event_beta_covariate",
    "event_site_frailty",
    "event_site_frailty_sd",
    "weibull_shape",
    "weibull_log_scale",
    "baseline_log_hazard",
)


def effects(result: Any) -> list[Effect]:
    """The trajectory's effects, then the event's: association, rituximab, covariates."""
    post = result.posterior["posterior"]
    event = str(result.spec.section("event")["kind"]).replace("_", " ")
    unit = f"log hazard ratio of {event}"
    out = progression.effects(result)
    out.insert(
        1,
        Effect(
            f"association: {event} per latent {score_name(result.spec)} logit [hazard]",
            "association",
            {},
            unit,
        ),
    )
    if "association_slope" in post:
        out.insert(
            2,
            Effect(
                f"association: {event} per latent {score_name(result.spec)} logit per year "
                "of current change [hazard]",
                "association_slope",
                {},
                unit,
            ),
        )
    out.append(Effect(f"rituximab course started [{event} hazard]", "event_rituximab", {}, unit))
    out += vector_effects(
        post, "event_beta_covariate", "event_covariate", lambda c: f"{c} [{event} hazard]", unit
    )
    return out


def methods_sentence(result: Any) -> str:
    """The joint model in one paragraph's sentence."""
    event = str(result.spec.section("event")["kind"]).replace("_", " ")
    follows = "current latent disability (the association)"
    if cohort_model.has_slope_association(result.spec):
        follows = (
            "current latent disability and its current rate of change (the associations "
            "with the value and the slope)"
        )
    return (
        progression.methods_sentence(result)
        + f" The time to {event} was modelled jointly, with a proportional-hazards model whose "
        f"log hazard rises with the patient's {follows}, "
        "so that informative dropout does not bias the trajectory; deaths known only between "
        "two contacts were interval-censored and the cumulative hazard was integrated by "
        "Gauss-Legendre quadrature."
    )


DEFINITION = ModelDefinition(
    name=cohort_model.NAME,
    title="disability progression with death",
    defaults=cohort_model.DEFAULTS,
    own_rules=OWN_RULES,
    make_design=cohort_model.make_design,
    build_model=cohort_model.build_model,
    headline=progression.HEADLINE,
    outcome_var="score",
    other_observed=("end_of_follow_up",),
    summary_vars=(*progression.SUMMARY_VARS, *EVENT_VARS),
    parameter_meanings={
        **progression.PARAMETER_MEANINGS,
        "association": "log hazard ratio of the event per latent logit of current disability",
        "association_slope": (
            "log hazard ratio of the event per latent logit per year of the current change "
            "in disability"
        ),
        "event_site_frailty": "hospital log frailty of the event",
        "event_site_frailty_sd": "sd of the hospitals' log frailties of the event",
        "weibull_shape": "Weibull shape of the event's baseline hazard (1 = constant)",
        "weibull_log_scale": "log of the Weibull scale of the event's baseline [log years]",
        "baseline_log_hazard": "log events per patient-year at latent disability 0, by period",
    },
    effects=effects,
    outcome_words=lambda result: f"{score_name(result.spec)} score at a visit",
    effect_units=progression.effect_units,
    methods_sentence=methods_sentence,
    benefit_words="slowing of disability progression",
    equations=progression.__doc__ + "\n" + cohort_model.__doc__,
    has_trajectory=True,
    starting_values=progression.starting_values,
    refit_spec=progression.refit_spec,
    divergence_advice=progression.divergence_advice,
    finalise=cohort_model.finalise,
    applies_to=lambda cohort: cohort.has_end_of_follow_up,
    figures=(
        ModelFigure("event_check", "Events observed and predicted", cohort_model.plot_event_check),
    ),
    predict=predictions.predict,
    timing=predictions.timing_contrast,
    report_sections=report.report_sections,
    simulation_options={"end_of_follow_up": True},
    sbc_completion=sbc.EventTimeDraw,
    prediction_figure=figures.plot_patient,
)
