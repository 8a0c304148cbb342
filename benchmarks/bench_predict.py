"""Benchmark of predictions: new patients x times x strategies from a 4,000-draw posterior.

Fits a default spec (progression unless ``--model``; 4 x 1,000 draws) on a 47-patient
simulated cohort (with the end of follow-up for the joint model), or reads a saved fit
(``--results``), then predicts every patient of another simulated cohort (new patients:
importance sampling on their visits, and for the joint model on their being event-free
up to their last visit) at 25 times under the 3 default strategies. Printed: ``fit_s``
(the whole fit, its timing answer included; NaN for a saved fit), ``timing_s`` (the
timing answer alone, progression), ``predict_s`` (``mb.predict`` for the new patients),
per-patient seconds, and the mean importance-sampling ESS.

Usage::

    .venv/bin/python benchmarks/bench_predict.py
    .venv/bin/python benchmarks/bench_predict.py --patients 100 --times 0:12:0.5
    .venv/bin/python benchmarks/bench_predict.py --model worsening
    .venv/bin/python benchmarks/bench_predict.py --model joint --results RESULTS
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _renamed(cohort):
    """The cohort with its patients renamed N001, ... (ids the fit does not have)."""
    from magbayes.cohort.tables import Cohort

    rename = {pid: "N" + str(pid)[1:] for pid in cohort.patient_ids}
    return Cohort.from_frames(
        cohort.patients.rename(index=rename).reset_index(),
        cohort.visits.assign(patient_id=cohort.visits["patient_id"].map(rename)),
        cohort.treatments.assign(patient_id=cohort.treatments["patient_id"].map(rename)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100, help="new patients to predict")
    parser.add_argument("--times", default="0:12:0.5", help="prediction times (25 by default)")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--model", default="progression", help="shipped model to fit")
    parser.add_argument(
        "--results", help="results folder of a saved fit of --model to predict from (no fit)"
    )
    args = parser.parse_args()

    import magbayes as mb
    from magbayes.predict import parse_times

    # the joint model needs each patient's end of follow-up
    with_end = args.model == "joint"
    if args.results:
        result = mb.load_fit(args.results)
        if result.model != args.model:
            parser.error(f"--results holds a {result.model} fit, not {args.model}")
        fit_s = float("nan")
    else:
        fitted = mb.simulate_cohort(
            n_patients=47, n_sites=2, seed=args.seed, end_of_follow_up=with_end
        ).cohort
        started = time.perf_counter()
        result = mb.fit(fitted, args.model, progress=False)
        fit_s = time.perf_counter() - started
    new = _renamed(
        mb.simulate_cohort(
            n_patients=args.patients, n_sites=2, seed=args.seed + 1, end_of_follow_up=with_end
        ).cohort
    )
    times = parse_times(args.times)
    started = time.perf_counter()
    tree = mb.predict(result, new, times=times)
    predict_s = time.perf_counter() - started
    ds = tree["predictions"]
    draws = int(
        result.posterior["posterior"].sizes["chain"] * result.posterior["posterior"].sizes["draw"]
    )
    rows = {
        "model": args.model,
        "posterior_draws": draws,
        "new_patients": int(ds.sizes["patient"]),
        "times": int(ds.sizes["time"]),
        "strategies": int(ds.sizes["strategy"]),
        "fit_s": round(fit_s, 1),
        "timing_s": round(result.timing.get("timing_answer_seconds", float("nan")), 2),
        "predict_s": round(predict_s, 1),
        "predict_s_per_patient": round(predict_s / max(1, ds.sizes["patient"]), 3),
        "importance_ess_mean": round(float(np.nanmean(ds["importance_ess"].values)), 1),
    }
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
