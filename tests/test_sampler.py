"""How fits choose their cores and nutpie options from the spec's [sampler] table."""

import pytest

from magbayes.errors import SpecError
from magbayes.fit import resolve_spec
from magbayes.sampler import available_cores, nutpie_options, parallel_chains, sample_options


def test_zero_cores_means_every_available_core_up_to_the_chains():
    assert parallel_chains({"cores": 0}, 64) == min(available_cores(), 64)
    assert parallel_chains({"cores": 0}, 1) == 1
    assert parallel_chains({"cores": 3}, 2) == 2
    assert parallel_chains({"cores": 1}, 4) == 1


def test_negative_settings_are_refused():
    with pytest.raises(SpecError, match="cores"):
        parallel_chains({"cores": -1}, 4)
    with pytest.raises(SpecError, match="extra_doublings"):
        nutpie_options({"extra_doublings": -1})
    with pytest.raises(SpecError, match="mass_matrix must be one of 'diag', 'low_rank'"):
        nutpie_options({"mass_matrix": "dense"})
    with pytest.raises(SpecError, match="mass_matrix"):
        resolve_spec("progression", {"sampler": {"mass_matrix": "dense"}})


def test_specs_carry_their_nutpie_options():
    progression = nutpie_options(resolve_spec("progression").section("sampler"))
    assert progression == {"extra_doublings": 1, "adaptation": "diag"}
    worsening = nutpie_options(resolve_spec("worsening").section("sampler"))
    assert worsening == {"extra_doublings": 0, "adaptation": "diag"}
    low_rank = resolve_spec("response", {"sampler": {"mass_matrix": "low_rank"}})
    assert nutpie_options(low_rank.section("sampler"))["adaptation"] == "low_rank"


def test_the_methods_text_names_a_low_rank_mass_matrix():
    from types import SimpleNamespace

    from magbayes.report.methods import _doublings

    def fit(**sampler):
        return SimpleNamespace(
            sampler="nutpie", spec=resolve_spec("progression", {"sampler": sampler})
        )

    assert _doublings(fit()) == ", 1 extra trajectory doubling after each U-turn"
    low_rank = _doublings(fit(mass_matrix="low_rank", extra_doublings=0))
    assert low_rank == ", a mass matrix adapted as a diagonal plus low-rank correction"


def test_sample_options_carry_the_spec_to_pymc_sample():
    settings = resolve_spec(
        "progression", {"sampler": {"draws": 123, "tune": 45, "chains": 3, "seed": 9}}
    ).section("sampler")
    options = sample_options(settings)
    assert options["draws"] == 123 and options["tune"] == 45 and options["chains"] == 3
    assert options["random_seed"] == 9 and options["target_accept"] == 0.8
    assert options["cores"] == parallel_chains(settings, 3)
    assert options["nuts"] == {"extra_doublings": 1, "adaptation": "diag"}
    # nutpie's own options are not given to another sampler
    assert "nuts" not in sample_options(settings, "pymc")
    assert sample_options(settings, "pymc")["nuts_sampler"] == "pymc"
