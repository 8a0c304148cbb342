"""The Mayo PBC follow-up data (R's ``pbcseq``) as a joint model's two tables.

The real-data check of the joint core (docs/models/joint-core.md): the data of the JMbayes2
vignette's model ``log(bilirubin) ~ year * sex`` (random intercept and slope in year per
patient), event death or transplant ``~ sex``, current-value association.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

#: Columns of :func:`~magbayes.models.joint.data.joint_arrays` for these tables.
PBCSEQ_COLUMNS = {
    "time_col": "year",
    "event_covariates": ["male"],
    "level_covariates": ["male"],
    "slope_covariates": ["male"],
}

#: JMbayes2 vignette: association of the current value of log bilirubin with the log
#: hazard of death or transplant, posterior mean and 95% credible interval.
JMBAYES2_ALPHA, JMBAYES2_LOW, JMBAYES2_HIGH = 1.2433, 1.0776, 1.4140


def pbcseq_tables(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The pbcseq data as a longitudinal table and an event table.

    Parameters
    ----------
    path : str or pathlib.Path
        ``pbcseq.csv`` (columns ``id``, ``futime`` and ``day`` in days, ``status`` 0/1/2,
        ``sex`` m/f, ``bili`` in mg/dl, ``stage`` 1-4).

    Returns
    -------
    longitudinal : pandas.DataFrame
        ``id``, ``year`` (visit, years since enrolment), ``log_bili`` (log mg/dl),
        ``stage`` (1-4), one row per visit.
    events : pandas.DataFrame
        ``id``, ``stop`` (years to death, transplant or end of follow-up), ``event`` (1:
        death or transplant), ``male`` (0/1), one row per patient.
    """
    visits = pd.read_csv(path)
    visits["year"] = visits["day"] / 365.25
    visits["log_bili"] = np.log(visits["bili"])
    visits["male"] = (visits["sex"] == "m").astype(float)
    events = visits.groupby("id", as_index=False).first()
    events["stop"] = events["futime"] / 365.25
    events["event"] = (events["status"] > 0).astype(int)
    return visits[["id", "year", "log_bili", "stage"]], events[["id", "stop", "event", "male"]]
