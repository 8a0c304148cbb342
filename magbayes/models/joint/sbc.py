r"""Simulation-based calibration of the joint model: event times drawn from its own hazard.

SBC redraws the data of every observed variable from the prior predictive distribution
(:mod:`magbayes.sbc.prior_draws`). The joint model's event part cannot be redrawn that
way: its observed ``end_of_follow_up`` is an outcome code over the observed time at risk,
and the time at risk, its quadrature nodes and the hazard's rows are data that depend on
when the event happened. So, per SBC fit:

1. the forward draw (the model's own graph) gives the parameters, the scores, and the log
   hazard of every patient on a fine grid of their time at risk from their entry to their
   end of follow-up in the design (both early-sural statuses where it is unknown, and the
   probability of "reduced" given the drawn scores);
2. an unknown status is drawn with that probability, and the event time by inverting the
   cumulative hazard: :math:`E_i \sim \mathrm{Exp}(1)`, :math:`T_i = H_i^{-1}(E_i)`, the
   patient censored at their end of follow-up :math:`C_i` when :math:`E_i > H_i(C_i)`.
   :math:`H_i` is integrated by Gauss-Legendre quadrature on stretches of at most
   :data:`GRID_STEP_YEARS` (also cut at treatment starts and the baseline's pieces) and
   taken as linear within a stretch, where the hazard changes by a few per cent;
3. the event arrays of the refit (time at risk, nodes, exposures at the event times) are
   those of :func:`~magbayes.models.joint.cohort_model.make_design` for the drawn times,
   swapped into the compiled model with the drawn scores and outcomes.

The visits' times are kept, as the model takes them (it does not model the visit schedule),
so scores are drawn at visits after a drawn death; the model's likelihood, scores times
event given the parameters, is the one the draws come from. Events are exact (no
interval-censored draws); the censoring time is the design's end of follow-up.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from magbayes.cohort.tables import Cohort
from magbayes.models.base import Design
from magbayes.models.joint.cohort_model import (
    event_inputs,
    event_part_data,
    hazard_grid,
    hazard_rows,
    with_drawn_status,
)
from magbayes.models.joint.events import (
    CENSORED,
    EVENT,
    arrays_from_times,
    course_starts,
    stretch_nodes,
)
from magbayes.spec import Spec

#: Longest stretch (years) of the grid on which an event time is drawn.
GRID_STEP_YEARS = 0.1

#: Gauss-Legendre nodes per stretch of that grid.
GRID_NODES = 3

#: Inputs of ``end_of_follow_up``'s distribution (after its random generator and size):
#: the positions of the log hazard at every row, under "reduced" at the rows of patients
#: whose early-sural status is unknown, and the log probability of "reduced".
_LOG_HAZARD, _LOG_HAZARD_REDUCED, _LOG_W_REDUCED = 3, 4, 5


class EventTimeDraw:
    """The joint model's event times for SBC.

    What the forward draw must give, and the refit's data from it.

    Parameters
    ----------
    cohort : Cohort
        The cohort of the SBC design (its treatment courses).
    design : Design
        Its joint design (:func:`~magbayes.models.joint.cohort_model.make_design`).
    spec : Spec
        The resolved joint spec.
    """

    def __init__(self, cohort: Cohort, design: Design, spec: Spec):
        self.cohort, self.design, self.spec = cohort, design, spec
        d = design.data
        self.entry = np.asarray(d["event_entry_years"], float)
        self.censor = np.asarray(d["event_end_years"], float)
        n = len(self.entry)
        self.starts = course_starts(cohort.treatments, list(design.coords["patient"]))
        piece_breaks = hazard_grid(spec)
        step = np.arange(
            0.0, float(self.censor.max(initial=0.0)) + GRID_STEP_YEARS, GRID_STEP_YEARS
        )
        breaks = np.concatenate([step, [] if piece_breaks is None else piece_breaks])
        self.edges: list[np.ndarray] = []
        node_patient, node_years, node_weight = [], [], []
        for i in range(n):
            edges, years, weight = stretch_nodes(
                self.entry[i], self.censor[i], self.starts.get(i, np.zeros(0)), breaks, GRID_NODES
            )
            self.edges.append(edges)
            node_patient.append(np.full(years.size, i))
            node_years.append(years.ravel())
            node_weight.append(weight.ravel())
        self.node_patient = np.concatenate(node_patient).astype(int)
        self.node_weight = np.concatenate(node_weight)
        grid = dict(d)
        grid.update(
            hazard_rows(cohort, design, spec, self.node_patient, np.concatenate(node_years))
        )
        grid.update(
            {
                "hazard_node_weight": self.node_weight,
                "hazard_node_after_lower": np.zeros(len(self.node_weight)),
                "event_outcome": np.zeros(n, int),
            }
        )
        self.grid_inputs = event_inputs(grid, spec)
        self.known = np.asarray(d["sural_known"]).astype(bool)
        self.unknown_row = self.grid_inputs["hazard_unknown_sural_row"]
        self.unknown_patient = self.grid_inputs["event_unknown_sural_patient"]

    def prepare(self, generator: Any) -> None:
        """Put the grid's rows into the generating model's data (not the fitted model's)."""
        for name, value in self.grid_inputs.items():
            shared = generator[name]
            shared.set_value(np.asarray(value, dtype=shared.type.dtype))

    def outputs(self, generator: Any) -> list[Any]:
        """What the forward draw must give besides parameters and observed data."""
        inputs = generator["end_of_follow_up"].owner.inputs
        return [inputs[_LOG_HAZARD], inputs[_LOG_HAZARD_REDUCED], inputs[_LOG_W_REDUCED]]

    def complete(
        self, values: list[np.ndarray], data: dict[str, np.ndarray], rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """The refit's data: drawn event times and outcomes, and the arrays they give.

        Parameters
        ----------
        values : list of numpy.ndarray
            The forward draw of :meth:`outputs`, on the grid.
        data : dict
            The forward draw's observed data (kept: the event part reads the scores as
            the observed score variable).
        rng : numpy.random.Generator
            For the early-sural statuses and the exponential draws.

        Returns
        -------
        dict
            ``end_of_follow_up`` (outcome codes) and every ``pm.Data`` of the event part
            (:func:`~magbayes.models.joint.cohort_model.event_inputs`), by name.
        """
        log_hazard = with_drawn_status(
            values[0],
            values[1],
            values[2],
            self.node_patient,
            self.unknown_patient,
            self.unknown_row,
            rng,
        )
        end, outcome = self.event_times(log_hazard, rng.exponential(size=len(self.entry)))
        return self.refit_data(end, outcome)

    def cumulative_hazards(self, log_hazard: np.ndarray) -> list[np.ndarray]:
        """Each patient's cumulative hazard at their grid's stretch bounds (from entry)."""
        per_node = self.node_weight * np.exp(np.asarray(log_hazard, float))
        out, offset = [], 0
        for edges in self.edges:
            n_stretch = len(edges) - 1
            stretch = per_node[offset : offset + n_stretch * GRID_NODES]
            offset += n_stretch * GRID_NODES
            per_stretch = stretch.reshape(n_stretch, GRID_NODES).sum(axis=1)
            out.append(np.concatenate([[0.0], np.cumsum(per_stretch)]))
        return out

    def event_times(
        self, log_hazard: np.ndarray, target: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """End of follow-up and outcome of each patient.

        The event where the cumulative hazard reaches ``target`` (an Exp(1) draw each),
        else censored at the design's end of follow-up.

        Parameters
        ----------
        log_hazard : numpy.ndarray
            Log hazard at the grid's nodes, each patient's status chosen.
        target : numpy.ndarray
            Per patient.

        Returns
        -------
        end : numpy.ndarray
            Years since onset.
        outcome : numpy.ndarray of int
            :data:`EVENT` or :data:`CENSORED`.
        """
        end = self.censor.copy()
        outcome = np.full(len(end), CENSORED)
        for i, cumulative in enumerate(self.cumulative_hazards(log_hazard)):
            if len(cumulative) < 2 or target[i] >= cumulative[-1]:
                continue
            k = int(np.searchsorted(cumulative, target[i], side="right")) - 1
            share = (target[i] - cumulative[k]) / (cumulative[k + 1] - cumulative[k])
            end[i] = self.edges[i][k] + share * (self.edges[i][k + 1] - self.edges[i][k])
            outcome[i] = EVENT
        return end, outcome

    def refit_data(self, end: np.ndarray, outcome: np.ndarray) -> dict[str, np.ndarray]:
        """The model data of a refit with these ends of follow-up and outcomes, by name."""
        n = len(end)
        arrays = arrays_from_times(
            self.entry,
            end,
            np.full(n, np.nan),
            outcome,
            self.starts,
            breaks=hazard_grid(self.spec),
            n_nodes=int(self.spec.section("event")["quadrature_nodes"]),
        )
        drawn = dict(self.design.data)
        drawn.update(event_part_data(self.cohort, self.design, self.spec, arrays))
        out = event_inputs(drawn, self.spec)
        out.pop("event_outcome_observed")  # the observed variable's data, swapped as such
        out["end_of_follow_up"] = outcome.astype("int64")
        return out
