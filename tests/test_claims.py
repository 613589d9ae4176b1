"""Claims checked: validation, verdict rules on hand-made numbers, and a real run with probes."""

from __future__ import annotations

import math

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import nnstudy
from nnstudy.config import parse_study
from nnstudy.errors import UserError
from nnstudy.stats.claims import CONTRADICTED, NOT_SHOWN, SUPPORTED, check_claims
from nnstudy.store.results import EpochRow, RunResult, StudyResults


def _study(values: dict[str, list[float]], claims: list[dict], probe: str | None = None) -> StudyResults:
    """Runs whose final test accuracy (or probe at epoch 0) per seed are the given values."""
    runs = []
    for variant, per_seed in values.items():
        for seed, value in enumerate(per_seed):
            run = RunResult(f"{variant}{seed}", variant, seed, "done", {})
            run.history = [EpochRow(1, 1.0, 0.5, 1.0, value if probe is None else 0.5, 0.1, 1.0)]
            if probe:
                run.probes = {0: {f"{probe}|{layer}": value * (i + 1) for i, layer in enumerate("abc")}}
            runs.append(run)
    return StudyResults("s", "", list(values), next(iter(values)), list(range(5)), [1], ["a", "b"], np.zeros(0),
                        {}, runs, out_dir=None, claims=claims)


def _claim(**kw) -> dict:
    return {"text": "t", "source": "", "metric": "test_acc", "variant": "b", "baseline": None, "value": None,
            "direction": "greater", "tolerance": 0.0, "epoch": None, "threshold": None, **kw}


def test_directional_claims_follow_the_paired_test():
    a = [0.90, 0.91, 0.92, 0.93, 0.94]
    up = [x + 0.02 + 0.001 * i for i, x in enumerate(a)]
    (supported,) = check_claims(_study({"a": a, "b": up}, [_claim(baseline="a")]))
    assert supported.verdict == SUPPORTED and supported.n == 5 and "+2.20 pp" in supported.evidence
    (contradicted,) = check_claims(_study({"a": a, "b": up}, [_claim(baseline="a", direction="less")]))
    assert contradicted.verdict == CONTRADICTED
    noisy = [x + d for x, d in zip(a, (0.01, -0.012, 0.004, -0.003, 0.002))]
    (unclear,) = check_claims(_study({"a": a, "b": noisy}, [_claim(baseline="a")]))
    assert unclear.verdict == NOT_SHOWN and "not shown at n=5 seeds" in unclear.evidence
    (few,) = check_claims(_study({"a": a[:1], "b": up[:1]}, [_claim(baseline="a")]))
    assert few.verdict == NOT_SHOWN and "needs at least 2" in few.evidence


def test_fixed_value_and_equivalence_claims():
    b = [0.11, 0.10, 0.12, 0.11, 0.10]
    (chance,) = check_claims(_study({"b": b}, [_claim(value=0.2, direction="less")]))
    assert chance.verdict == SUPPORTED and chance.reference == "0.2"
    (equal,) = check_claims(_study({"a": b, "b": b}, [_claim(baseline="a", direction="within", tolerance=0.0)]))
    assert equal.verdict == NOT_SHOWN  # equal accuracies per seed could be chance: their spread is unknown
    exact = _study({"a": [1000.0] * 5, "b": [1000.0] * 5}, [_claim(metric="params", baseline="a", direction="within")],
                   probe="params")
    for run in exact.runs:
        run.probes = {0: {"params": 1000.0}}
    (same,) = check_claims(exact)
    assert same.verdict == SUPPORTED  # a parameter count is exact: equal is equal
    far = [x + d for x, d in zip(b, (0.05, 0.052, 0.048, 0.051, 0.049))]
    (outside,) = check_claims(_study({"a": b, "b": far}, [_claim(baseline="a", direction="within", tolerance=0.01)]))
    assert outside.verdict == CONTRADICTED and "90% CI" in outside.evidence
    wobbly = [x + d for x, d in zip(b, (0.02, -0.02, 0.01, -0.01, 0.0))]
    (unsure,) = check_claims(_study({"a": b, "b": wobbly}, [_claim(baseline="a", direction="within", tolerance=0.01)]))
    assert unsure.verdict == NOT_SHOWN


def test_probe_metrics_are_computed_from_the_stored_probes():
    values = [0.5, 0.6, 0.7, 0.8, 0.9]
    study = _study({"b": values}, [_claim(metric="grad_norm_ratio", value=1.0, direction="less", epoch=0),
                                   _claim(metric="act_std_ratio", value=3.0, direction="within", tolerance=0.0, epoch=0)],
                   probe="grad_norm")
    ratio, _ = check_claims(study)
    # grad_norm|a = v, |c = 3v: first / last = 1/3 for every seed, below 1.
    assert ratio.variant_mean == pytest.approx(1 / 3) and ratio.verdict == SUPPORTED


def test_claims_are_validated_like_every_other_key():
    base = {"name": "s", "seeds": [0, 1], "dataset": {"name": "digits"}, "model": {"kind": "mlp", "hidden": [8]},
            "train": {"epochs": 2}, "variants": {"a": {}, "b": {"model": {"init": "zeros"}}}}
    ok = {"text": "zeros do not learn", "metric": "test_acc", "variant": "b", "value": 0.2, "direction": "less"}
    assert parse_study({**base, "claims": [ok]}, "x.toml").claims[0].value == 0.2
    cases = [({"variant": "c"}, "claims[0].variant = 'c' is not a variant"),
             ({"metric": "test_accuracy"}, "did you mean 'test_acc'"),
             ({"baseline": "a"}, "give exactly one of baseline and value"),
             ({"direction": "bigger"}, "claims.0.direction"),
             ({"epoch": 5}, "past variant b's last epoch (2)"),
             ({"metric": "shift_agreement@2", "epoch": 1}, "measured on report epochs only"),
             ({"metric": "epochs_to_acc"}, "needs threshold")]
    for change, message in cases:
        with pytest.raises(UserError, match=None) as err:
            parse_study({**base, "claims": [{**ok, **change}]}, "x.toml")
        assert message in str(err.value) and "\n" not in str(err.value), (change, str(err.value))


INIT_STUDY = {
    "name": "init-claims", "seeds": [0, 1, 2, 3, 4], "report_epochs": [1],
    "dataset": {"name": "digits"}, "model": {"kind": "mlp", "hidden": [32, 16]},
    "train": {"lr": 0.05, "batch_size": 32, "epochs": 3},
    "variants": {"default": {}, "zeros": {"model": {"init": "zeros"}},
                 "constant": {"model": {"init": "constant", "init_value": 0.05}},
                 "small": {"model": {"init": "normal", "init_value": 0.001}},
                 "large": {"model": {"init": "normal", "init_value": 1.0}}},
}


def test_the_initialisation_claims_on_a_real_run(tmp_path):
    claims = nnstudy.load_study("mnist-init").config.model_dump(mode="json")["claims"]
    study = nnstudy.load_study({**INIT_STUDY, "claims": [c for c in claims if c["variant"] != "xavier"]})
    results = study.run(tmp_path / "out", cache_dir=tmp_path / "cache", executor="local", progress=False)
    checked = {c.variant: c for c in check_claims(results.study)}
    assert checked["zeros"].verdict == SUPPORTED and checked["zeros"].variant_mean < 0.2
    assert checked["constant"].verdict == SUPPORTED and checked["constant"].variant_mean > 0.99
    assert checked["small"].verdict == SUPPORTED and checked["large"].verdict == SUPPORTED
    # The evidence is the stored probes, recomputed here by hand.
    for run in results.study.runs_of("large"):
        p = run.probes[0]
        grads = [v for k, v in p.items() if k.startswith("grad_norm|")]
        assert len(grads) == 3 and math.isfinite(grads[0])
    assert checked["constant"].n == 5 and checked["constant"].p_value == pytest.approx(1 / 32)  # exact sign-flip
    firsts = [r.probes[0]["grad_norm|1"] for r in results.study.runs_of("large")]
    bases = [r.probes[0]["grad_norm|1"] for r in results.study.runs_of("default")]
    assert checked["large"].diff_mean == pytest.approx(np.mean(firsts) - np.mean(bases))

    # The report shows each claim with its verdict, and the mechanism figures.
    html = Path(results.report).read_text()
    body = html.split("</nav>", 1)[1]
    section = body.split('<h2 id="claims">Claims checked</h2>', 1)[1].split("<h2", 1)[0]
    for claim in checked.values():
        row = section.split(claim.text.replace("'", "&#39;"), 1)[1].split("</tr>", 1)[0]
        assert f'<span class="verdict better">{claim.verdict}</span>' in row, claim.text
    figures = results.study.out_dir / "figures"
    for name in ("grad-norm-depth", "act-std-depth", "dead-units", "shift"):
        image = Image.open(figures / f"{name}.png")
        assert image.size[0] > 500 and image.size[1] > 300, name
    assert '<h2 id="mechanisms">Mechanisms</h2>' in body
    md = (results.study.out_dir / "report.md").read_text()
    assert "## Claims checked" in md and "| All-zero weights may not learn at all. |" in md
