r"""Worsening model: time to confirmed worsening of a disability score.

The event is *confirmed worsening*: the score at least ``change`` points worse than the
patient's baseline, confirmed at the next visit (CLINICAL.md). It is only seen at visits,
so it happened between the last visit without it (:math:`L`) and the first visit that
shows it (:math:`R`): the likelihood is interval-censored. For patient :math:`i` at site
:math:`s(i)`, at :math:`t` years since onset,

.. math::

    h_i(t) = h_0(t)\,\exp\Big(u_{s(i)} + x_i^\top\beta_{\mathrm{cov}}
        + \beta_{\mathrm{sural}}\,\mathrm{sural}_i
        + \sum_{k} n_{ik}(t)\,\beta_{k}
        + n_{i,\mathrm{rtx}}(t)\,(\beta_{\mathrm{rtx}}
        + \beta_{\mathrm{rtx}\times\mathrm{sural}}\,\mathrm{sural}_i)\Big)

with :math:`h_0` piecewise constant on a grid (or Weibull), :math:`n_{ik}(t)` the number of
courses of treatment :math:`k` started by :math:`t` (or 0/1: ever started), :math:`u_s` a
log-normal site frailty (partial pooling) and missing covariates imputed in the model.
The patient is at risk from the baseline visit (delayed entry). Per patient, with
:math:`H_i(a, b) = \int_a^b h_i`:

- worsening in :math:`(L, R]`: :math:`\log(S(L) - S(R)) = -H(e, L)
  + \log(1 - e^{-H(L, R)})` (``log1mexp``);
- no worsening by the end of follow-up :math:`C`: :math:`-H(e, C)`,

with :math:`e` the baseline visit. The observed value of ``worsening`` is the outcome as
an index over the visits checked for worsening, :math:`e = t_0 < t_1 < \dots < t_J = C`:
:math:`j` when the worsening happened in :math:`(t_{j-1}, t_j]` (:math:`L = t_{j-1}`,
:math:`R = t_j`), 0 when none was seen by :math:`C`. The visit times are design; the
likelihood reads the index, so predictive draws and SBC refits use the same outcome.
A patient whose early-sural status is unknown contributes the mixture over both
statuses, weighted by the estimated prevalence. The
rituximab log hazard ratio is :math:`\beta_{\mathrm{rtx}} +
\beta_{\mathrm{rtx}\times\mathrm{sural}}\,\mathrm{sural}_i`; a negative value means fewer
worsenings, so the headline is :math:`P(\beta_{\mathrm{rtx}\times\mathrm{sural}} < 0)`.

The likelihood is that of the survival core :mod:`magbayes.models.survival`
(:func:`~magbayes.models.survival.data.visit_interval_arrays`,
:func:`~magbayes.models.survival.likelihood.interval_hazards`,
:func:`~magbayes.models.survival.likelihood.visit_interval_log_likelihood`,
:func:`~magbayes.models.survival.likelihood.draw_visit_interval`), the one that
``tests/test_survival_core.py`` checks against lifelines on real data.

The package: this module's ``DEFINITION`` (the model definition the pipeline reads),
:mod:`~magbayes.models.worsening.definition` (name, spec defaults and rules, headline),
:mod:`~magbayes.models.worsening.events` (confirmed worsening),
:mod:`~magbayes.models.worsening.design` (:func:`make_design`, follow-up rows),
:mod:`~magbayes.models.worsening.model` (:func:`build_model` and its likelihood),
:mod:`~magbayes.models.worsening.outputs` (survival curves, hazard ratios, their files,
the words and figures of the report), :mod:`~magbayes.models.worsening.predictions`
(a patient's worsening-free probability under treatment strategies).
"""

from magbayes.labels import score_name
from magbayes.models.base import ModelDefinition, ModelFigure
from magbayes.models.worsening import predictions
from magbayes.models.worsening.definition import (
    DEFAULTS,
    HEADLINE,
    NAME,
    OWN_RULES,
    SPEC_RULES,
    SUMMARY_VARS,
)
from magbayes.models.worsening.design import (
    counting_process_data,
    exposure_rows,
    hazard_grid,
    make_design,
    visit_interval_data,
)
from magbayes.models.worsening.events import (
    LOWER_IS_WORSE,
    WorseningOutcome,
    confirmed_worsening,
    worsening_outcomes,
)
from magbayes.models.worsening.model import (
    CENTRED_MIN_WORSENINGS_PER_SITE,
    _baseline,
    _centred_frailty,
    _prior,
    build_model,
)
from magbayes.models.worsening.outputs import (
    draw_prior_survival_curves,
    draw_survival_curves,
    effects,
    hazard_ratio_table,
    methods_sentence,
    plot_patient_worsening,
    plot_survival_curves,
    survival_curve_table,
    survival_curves,
    write_outputs,
)

# `_baseline`, `_centred_frailty` and `_prior` are here for tests/test_worsening.py, which
# rebuilds the model's priors to check its likelihood.
__all__ = [
    "CENTRED_MIN_WORSENINGS_PER_SITE",
    "DEFAULTS",
    "DEFINITION",
    "HEADLINE",
    "LOWER_IS_WORSE",
    "NAME",
    "SPEC_RULES",
    "SUMMARY_VARS",
    "WorseningOutcome",
    "_baseline",
    "_centred_frailty",
    "_prior",
    "build_model",
    "confirmed_worsening",
    "counting_process_data",
    "exposure_rows",
    "hazard_grid",
    "hazard_ratio_table",
    "make_design",
    "plot_survival_curves",
    "survival_curve_table",
    "survival_curves",
    "visit_interval_data",
    "worsening_outcomes",
    "write_outputs",
]

DEFINITION = ModelDefinition(
    name=NAME,
    title="confirmed worsening",
    defaults=DEFAULTS,
    own_rules=OWN_RULES,
    make_design=make_design,
    build_model=build_model,
    headline=HEADLINE,
    outcome_var="worsening",
    summary_vars=tuple(SUMMARY_VARS),
    parameter_meanings={
        "baseline_log_hazard": "log baseline hazard of each time piece (per year)",
        "weibull_shape": "Weibull shape of the baseline hazard",
        "weibull_log_scale": "log Weibull scale of the baseline hazard (years)",
        "site_log_frailty": "site log frailty",
        "site_log_frailty_sd": "sd of the site log frailties",
        "site_log_frailty_vs_reference": "site log hazard ratio against the reference site",
    },
    effects=effects,
    outcome_words=lambda result: (
        "checked visit (after baseline) that first showed a confirmed "
        f"{score_name(result.spec)} worsening (0 = none during follow-up)"
    ),
    effect_units=lambda result: (
        "Units: log hazard ratio of confirmed worsening (negative = fewer worsenings)"
    ),
    methods_sentence=methods_sentence,
    benefit_words="reduction in the hazard of confirmed disability worsening",
    equations=__doc__ or "",
    figures=(ModelFigure("survival_curves", "Survival curves", draw_survival_curves),),
    prior_figures=(
        ModelFigure(
            "prior_survival_curves", "Survival curves from the prior", draw_prior_survival_curves
        ),
    ),
    write_outputs=write_outputs,
    predict=predictions.predict,
    prediction_figure=plot_patient_worsening,
)
