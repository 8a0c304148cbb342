"""Stress settings: cohorts unlike the calibrated default, to test the models' defaults.

The default simulator is calibrated to the published cohort (levels spread by 3.4 logit,
INCAT cutpoints 3 logit apart, visits about every 9 months). A real cohort can look quite
different, so defaults chosen on the simulator alone are not shown to be good.
:class:`StressSetting` names the assumptions that matter to the sampler and to the
calibration of the answer, in clinical units, and :func:`simulate_stressed` turns one
setting into :func:`magbayes.simulate.simulate_cohort` overrides; every resolved value is
then recorded in ``truth.json`` (``generator.overrides``) as usual.

Cutpoint spacing sets the latent scale: the mean level, the progression rate and every
treatment effect are scaled with it, so that a patient crosses about as many INCAT
categories per year as in the calibrated cohort. The spreads of levels and rates are given
on the latent scale itself (logit, logit per year), as a fitted model reports them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any

from magbayes.simulate.parameters import DEFAULTS, OTHER_TREATMENTS
from magbayes.simulate.simulator import SimulatedCohort, simulate_cohort

#: Cutpoint spacing of the calibrated simulator (logit between adjacent INCAT cutpoints).
CALIBRATED_SPACING: float = 3.0


@dataclass(frozen=True)
class StressSetting:
    """One point of the stress grid.

    Attributes
    ----------
    n_patients : int
        Patients in the cohort.
    level_sd : float
        Between-patient spread of the disability level at onset (logit).
    rate_sd : float
        Between-patient spread of the progression rate (logit per year).
    cutpoint_spacing : float
        Gap between adjacent INCAT cutpoints (logit; 3.0 calibrated). ONLS and mRS
        cutpoints are scaled by the same factor.
    visit_interval_years : float
        Median time between visits (years).
    follow_up_years : float
        Mean follow-up (years; gamma with shape 2, cut at 12 years).
    covariate_effects : bool
        Whether the baseline covariates shift the level (calibrated effects) or not (0).
    unknown_sural_share : float
        Share of patients whose sural amplitude is missing (early-sural status unknown).
    rituximab_on_worsening : float
        0: rituximab at a time drawn independently of disability; k > 0: rituximab only
        after INCAT has risen by k points since the first visit (confounding by
        indication, :mod:`magbayes.simulate.indication`).
    site_level_sd : float
        Spread of the sites' levels (logit); the sites' rates spread a tenth of it per year.
    interaction : float
        True ``gamma_rituximab_x_sural`` in categories of the calibrated scale (it is
        scaled with the cutpoints like every effect); 0 = no interaction (the null).
    death_alpha : float or None
        ``None``: no end of follow-up is simulated (as before). A number: death and loss
        to follow-up are simulated (``end_of_follow_up=True``,
        :mod:`magbayes.simulate.dropout`), with this log hazard ratio of death per INCAT
        category of current disability (per cutpoint spacing, so that it means the same
        whatever the latent scale; 0.6 is the simulator's default of 0.2 per latent logit
        at the calibrated spacing).
    response_rituximab : float
        True ``alpha_rituximab``: rituximab's log-odds of a good response against IVIg in
        sural-preserved patients (1.4 calibrated; the response model's grid varies it).
    response_patient_sd, response_site_sd : float
        Spreads of the patients' and the sites' log-odds of a good response.
    response_unknown : float
        Share of treatment courses whose rating is recorded as ``unknown``.
    """

    n_patients: int = 47
    level_sd: float = 3.4
    rate_sd: float = 0.2
    cutpoint_spacing: float = CALIBRATED_SPACING
    visit_interval_years: float = 0.75
    follow_up_years: float = 8.5
    covariate_effects: bool = True
    unknown_sural_share: float = 0.04
    rituximab_on_worsening: float = 0.0
    site_level_sd: float = 0.5
    interaction: float = 0.0
    death_alpha: float | None = None
    response_rituximab: float = DEFAULTS["response"]["alpha_rituximab"]
    response_patient_sd: float = DEFAULTS["response"]["patient_sd"]
    response_site_sd: float = DEFAULTS["response"]["site_sd"]
    response_unknown: float = DEFAULTS["missing"]["response_unknown"]

    def label(self) -> str:
        """A short name of what differs from the calibrated setting."""
        base = StressSetting(n_patients=self.n_patients)
        changed = [
            f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
            for key, value in asdict(self).items()
            if value != getattr(base, key)
        ]
        return f"n={self.n_patients} " + (" ".join(changed) if changed else "calibrated")

    def scale(self) -> float:
        """Latent scale of this setting relative to the calibrated one."""
        return self.cutpoint_spacing / CALIBRATED_SPACING


def stress_overrides(setting: StressSetting) -> dict[str, Any]:
    """:func:`~magbayes.simulate.simulate_cohort` keyword arguments for a setting.

    Parameters
    ----------
    setting : StressSetting

    Returns
    -------
    dict
        ``n_patients``, ``sural_rituximab_effect``, ``worsening_from`` and the parameter
        overrides by section; ``end_of_follow_up`` and the ``dropout`` section when the
        setting has a ``death_alpha`` (the reference disability scaled with the latent
        scale, so that it stays about INCAT 2).
    """
    f = setting.scale()
    prog = DEFAULTS["progression"]
    interval = setting.visit_interval_years
    overrides = {
        "n_patients": setting.n_patients,
        "sural_rituximab_effect": setting.interaction * f,
        # progression truth exact (worsening is whatever the scores show)
        "worsening_from": "scores",
        "progression": {
            "intercept": prog["intercept"] * f,
            "slope": prog["slope"] * f,
            "patient_sd": [setting.level_sd, setting.rate_sd],
            "site_level_sd": setting.site_level_sd,
            "site_slope_sd": setting.site_level_sd / 10.0,
            "rate_sural_reduced": prog["rate_sural_reduced"] * f,
            "beta_covariate": {
                name: (value * f if setting.covariate_effects else 0.0)
                for name, value in prog["beta_covariate"].items()
            },
            "gamma_treatment": {
                name: prog["gamma_treatment"][name] * f for name in OTHER_TREATMENTS
            },
            "gamma_rituximab": prog["gamma_rituximab"] * f,
            "gamma_later_line": prog["gamma_later_line"] * f,
            "cutpoints": {
                score: [c * f for c in cuts] for score, cuts in prog["cutpoints"].items()
            },
        },
        "visits": {
            "interval_median_years": interval,
            "interval_min_years": min(DEFAULTS["visits"]["interval_min_years"], interval / 2),
            "interval_max_years": max(DEFAULTS["visits"]["interval_max_years"], 2 * interval),
            "follow_up_mean_years": setting.follow_up_years,
        },
        "treatments": {"rituximab_trigger_incat_rise": setting.rituximab_on_worsening},
        "response": {
            "alpha_rituximab": setting.response_rituximab,
            "patient_sd": setting.response_patient_sd,
            "site_sd": setting.response_site_sd,
        },
        "missing": {
            "sural_snap_uv": setting.unknown_sural_share,
            "first_ncs_years": 0.0,
            "response_unknown": setting.response_unknown,
        },
        # first nerve conduction studies within the early-sural window, so that the share
        # of unknown statuses is the share of missing amplitudes
        "population": {"first_ncs_mean_years": 1.0},
    }
    if setting.death_alpha is not None:
        overrides["end_of_follow_up"] = True
        overrides["dropout"] = {
            "death_alpha": setting.death_alpha / setting.cutpoint_spacing,
            "disability_reference": DEFAULTS["dropout"]["disability_reference"] * f,
        }
    return overrides


def simulate_stressed(setting: StressSetting, seed: int) -> SimulatedCohort:
    """Simulate one cohort of a stress setting (see :func:`stress_overrides`)."""
    return simulate_cohort(seed=seed, **stress_overrides(setting))


#: The cohorts of an independent generator on which the default progression fit first
#: failed its gate: levels spread about 1 logit, rates about 0.1 per year, cutpoints
#: 0.9 apart, covariates without effect, every early-sural status known, sites close.
REAL_LIKE = StressSetting(
    level_sd=1.0,
    rate_sd=0.1,
    cutpoint_spacing=0.9,
    covariate_effects=False,
    unknown_sural_share=0.0,
    site_level_sd=0.2,
)

#: Informative dropout: death strongly tied to the current disability (hazard ratio about
#: 4.5 per INCAT category, e^1.5) in the real-like cohort, so that the sickest patients
#: leave early and the visits that remain under-represent them. Not in the grid below.
STRONG_DROPOUT = dataclasses.replace(REAL_LIKE, death_alpha=1.5)

#: The grid of ``benchmarks/bench_robustness.py`` (docs/robustness.md), by name.
STRESS_GRID: dict[str, StressSetting] = {
    "calibrated": StressSetting(),
    "real_like": REAL_LIKE,
    "tight_levels": dataclasses.replace(
        REAL_LIKE, level_sd=0.5, rate_sd=0.03, cutpoint_spacing=0.7
    ),
    "wide_spreads": StressSetting(level_sd=4.0, rate_sd=0.5),
    "sparse_visits": dataclasses.replace(REAL_LIKE, visit_interval_years=1.5, follow_up_years=4.0),
    "dense_visits": dataclasses.replace(REAL_LIKE, visit_interval_years=0.4, follow_up_years=11.0),
    "unknown_sural": dataclasses.replace(REAL_LIKE, unknown_sural_share=0.4),
    "no_sites": dataclasses.replace(REAL_LIKE, site_level_sd=0.0, covariate_effects=True),
    "large_sites": StressSetting(site_level_sd=2.0, cutpoint_spacing=1.5),
    "indication_150": dataclasses.replace(REAL_LIKE, n_patients=150, rituximab_on_worsening=2.0),
    "real_like_300": dataclasses.replace(REAL_LIKE, n_patients=300),
}

#: The response model's grid (``bench_robustness.py --model response``): what matters to a
#: rating per treatment course, all under the null (no sural x rituximab interaction). The
#: ratings do not depend on the disability settings above, so this grid varies the
#: response's own truth: how much rituximab helps, the patients' and sites' spreads, unknown
#: ratings and early-sural statuses, and the cohort's size.
RESPONSE_GRID: dict[str, StressSetting] = {
    "calibrated": StressSetting(),
    "rituximab_no_better": StressSetting(response_rituximab=0.0),
    "rituximab_strong": StressSetting(response_rituximab=2.5),
    "wide_patients": StressSetting(response_patient_sd=2.0, response_site_sd=0.8),
    "alike_patients": StressSetting(response_patient_sd=0.1, response_site_sd=0.0),
    "unknown_sural": StressSetting(unknown_sural_share=0.4),
    "unknown_ratings": StressSetting(response_unknown=0.3),
    "cohort_150": StressSetting(n_patients=150),
}
