"""The Adult census problem's Python module: the vendored real data and a seeded synthetic
generator of its schema, with the drift knobs of ``model_code.data.Drift`` (tests, benchmarks and
drift scenarios use it; no step needs it).

Command line (writes CSV for pipeline inputs, drift tests and benchmarks)::

    python -m problems.adult.synthetic real --out data/adult.csv
    python -m problems.adult.synthetic synthetic --rows 1000000 --seed 7 --out data/synth.csv \\
        --mean-shift age=10 --variance-scale hours_per_week=2 \\
        --new-category workclass=Gig-economy:0.2 --missing-surge occupation=0.5

Labels are drawn from the undrifted features: the scenarios are covariate drift, the outcome does
not follow.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from model_code.data import Drift, apply_drift, read_split, stream, write_csv
from model_code.problem import load_problem
from model_code.schema import Schema

FOLDER = Path(__file__).resolve().parent
ADULT = load_problem(FOLDER).schema
"""The Adult census schema, as problems/adult/problem.yaml declares it."""
ADULT_CSV = FOLDER / "data.csv.gz"


def load_adult() -> pd.DataFrame:
    """The real dataset (48,842 rows) in canonical dtypes. See problems/adult/DATASET.md."""
    split, _ = read_split(ADULT_CSV, ADULT)
    return split


# Marginals measured on the real data (model_code/DATASET.md); approximate by design.
_P_WORKCLASS = {"Private": 0.7364, "Self-emp-not-inc": 0.0839, "Local-gov": 0.0681, "State-gov": 0.043,
                "Self-emp-inc": 0.0368, "Federal-gov": 0.0311, "Without-pay": 0.0005, "Never-worked": 0.0002}
_P_MARITAL = {"Married-civ-spouse": 0.4582, "Never-married": 0.33, "Divorced": 0.1358, "Separated": 0.0313,
              "Widowed": 0.0311, "Married-spouse-absent": 0.0129, "Married-AF-spouse": 0.0008}
_P_OCCUPATION = {"Prof-specialty": 0.1341, "Craft-repair": 0.1328, "Exec-managerial": 0.1322,
                 "Adm-clerical": 0.1219, "Sales": 0.1196, "Other-service": 0.1069,
                 "Machine-op-inspct": 0.0656, "Transport-moving": 0.0512, "Handlers-cleaners": 0.045,
                 "Farming-fishing": 0.0324, "Tech-support": 0.0314, "Protective-serv": 0.0214,
                 "Priv-house-serv": 0.0053, "Armed-Forces": 0.0003}
_OCCUPATION_EFFECT = {"Exec-managerial": 0.8, "Prof-specialty": 0.7, "Tech-support": 0.4, "Sales": 0.2,
                      "Protective-serv": 0.3, "Other-service": -0.9, "Handlers-cleaners": -0.7,
                      "Farming-fishing": -0.6, "Priv-house-serv": -1.5, "Machine-op-inspct": -0.3}
_P_RACE = {"White": 0.855, "Black": 0.0959, "Asian-Pac-Islander": 0.0311, "Amer-Indian-Eskimo": 0.0096,
           "Other": 0.0083}
_P_COUNTRY_TOP = {"United-States": 0.9135, "Mexico": 0.0198, "Philippines": 0.0061, "Germany": 0.0043,
                  "Puerto-Rico": 0.0038, "Canada": 0.0038, "El-Salvador": 0.0032, "India": 0.0031,
                  "Cuba": 0.0029, "England": 0.0026, "China": 0.0025}
_P_EDUCATION = np.array([0.0017, 0.0051, 0.0104, 0.0196, 0.0155, 0.0284, 0.0371, 0.0135, 0.3232, 0.2227,
                         0.0422, 0.0328, 0.1643, 0.0544, 0.0171, 0.0122])


def _draw(rng: np.random.Generator, probs: Mapping[str, float], n: int) -> tuple[np.ndarray, np.ndarray]:
    names = np.array(list(probs), dtype=object)
    p = np.array(list(probs.values()), dtype=float)
    codes = rng.choice(len(names), size=n, p=p / p.sum())
    return names, codes


def synthesize(rows: int, seed: int = 0, drift: Drift | None = None, schema: Schema = ADULT) -> pd.DataFrame:
    """``rows`` synthetic rows of the Adult schema (canonical dtypes), deterministic in ``seed``.

    Vectorized numpy; about a second per million rows. Relations mimic the census data
    (age-marital, marital-relationship, sex-hours, missing workclass implies missing occupation)
    and the label follows a logistic model of the features (~24% positives).
    """
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    if schema is not ADULT and schema.feature_names != ADULT.feature_names:
        raise ValueError("synthesize only knows the Adult schema's columns")
    drift = drift or Drift()
    drift.check(schema)
    n = rows
    rng = stream(seed, "base")

    male = rng.random(n) < 0.6685
    age = np.clip(np.rint(17 + rng.gamma(2.2, 9.8, n)), 17, 90)
    edu = rng.choice(np.arange(1, 17), size=n, p=_P_EDUCATION / _P_EDUCATION.sum()).astype(float)

    marital_names, marital = _draw(rng, _P_MARITAL, n)
    young = age < 25
    never = int(np.flatnonzero(marital_names == "Never-married")[0])
    marital = np.where(young & (rng.random(n) < 0.85), never, marital)
    married = np.isin(marital_names[marital], ["Married-civ-spouse", "Married-AF-spouse"])

    rel_names = np.array(["Husband", "Wife", "Not-in-family", "Own-child", "Unmarried", "Other-relative"],
                         dtype=object)
    single_p = np.array([0.45, 0.26, 0.18, 0.055])
    single_young_p = np.array([0.25, 0.62, 0.07, 0.06])
    u = rng.random(n)
    single_choice = np.where(
        young,
        np.searchsorted(np.cumsum(single_young_p) / single_young_p.sum(), u),
        np.searchsorted(np.cumsum(single_p) / single_p.sum(), u),
    ) + 2
    spouse = np.where(male, 0, 1)
    spouse_ok = rng.random(n) < 0.97
    relationship = np.where(married & spouse_ok, spouse, np.minimum(single_choice, 5))

    race_names, race = _draw(rng, _P_RACE, n)
    country_p = dict(_P_COUNTRY_TOP)
    rest = [c for c in schema.feature("native_country").categories  # type: ignore[union-attr]
            if c not in country_p]
    for c in rest:
        country_p[c] = (1.0 - sum(_P_COUNTRY_TOP.values())) / len(rest)
    country_names, country = _draw(rng, country_p, n)
    work_names, work = _draw(rng, _P_WORKCLASS, n)
    occ_names, occ = _draw(rng, _P_OCCUPATION, n)

    hours = np.clip(np.rint(rng.normal(38.0 + 4.0 * male, 11.5)), 1, 99)
    gain = np.where(rng.random(n) < 0.083, np.minimum(np.rint(np.exp(rng.normal(8.8, 1.0, n))), 99_999), 0.0)
    loss = np.where(rng.random(n) < 0.047, np.clip(np.rint(rng.normal(1870, 360, n)), 155, 4356), 0.0)
    fnlwgt = np.clip(np.rint(np.exp(rng.normal(11.98, 0.63, n))), 12_285, 1_490_400)

    work_missing = rng.random(n) < 0.057
    country_missing = rng.random(n) < 0.0175

    occ_effect = np.array([_OCCUPATION_EFFECT.get(str(o), 0.0) for o in occ_names])[occ]
    logit = (
        -2.8 + 0.045 * (age - 38) - 0.0012 * (age - 38) ** 2 + 0.38 * (edu - 10) + 2.0 * married
        + 0.4 * male + 0.035 * (hours - 40) + 2.5 * (gain > 7000) + 1.0 * (loss > 1800) + occ_effect
    )
    label = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype("int64")

    def categorical(names: np.ndarray, codes: np.ndarray, missing: np.ndarray | None = None) -> np.ndarray:
        values = names[codes]
        if missing is not None:
            values[missing] = np.nan
        return values

    data: dict[str, np.ndarray] = {
        "age": age,
        "workclass": categorical(work_names, work, work_missing),
        "fnlwgt": fnlwgt,
        "education_num": edu,
        "marital_status": categorical(marital_names, marital),
        "occupation": categorical(occ_names, occ, work_missing),
        "relationship": categorical(rel_names, relationship),
        "race": categorical(race_names, race),
        "sex": np.where(male, "Male", "Female").astype(object),
        "capital_gain": gain.astype(float),
        "capital_loss": loss.astype(float),
        "hours_per_week": hours,
        "native_country": categorical(country_names, country, country_missing),
    }
    apply_drift(data, drift, seed, n, schema)
    frame = pd.DataFrame({name: data[name] for name in schema.feature_names})
    for f in schema.categorical:
        frame[f.name] = frame[f.name].astype(object)
    frame[schema.label] = label
    return frame


# --- command line ------------------------------------------------------------------------------
def _pairs(values: Sequence[str], knob: str) -> dict[str, str]:
    out = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise SystemExit(f"--{knob}: expected FEATURE=VALUE, got {item!r}")
        out[name] = value
    return out


def _float(value: str, knob: str, name: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise SystemExit(f"--{knob} {name}: {value!r} is not a number") from None


def drift_from_args(args: argparse.Namespace) -> Drift:
    new_category = {}
    for name, value in _pairs(args.new_category, "new-category").items():
        category, sep, share = value.rpartition(":")
        if not sep or not category:
            raise SystemExit(f"--new-category {name}: expected CATEGORY:SHARE, got {value!r}")
        new_category[name] = (category, _float(share, "new-category", name))
    return Drift(
        mean_shift={k: _float(v, "mean-shift", k) for k, v in _pairs(args.mean_shift, "mean-shift").items()},
        variance_scale={k: _float(v, "variance-scale", k)
                        for k, v in _pairs(args.variance_scale, "variance-scale").items()},
        new_category=new_category,
        missing_surge={k: _float(v, "missing-surge", k)
                       for k, v in _pairs(args.missing_surge, "missing-surge").items()},
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m problems.adult.synthetic", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    real = sub.add_parser("real", help="write the vendored Adult dataset as CSV")
    real.add_argument("--out", type=Path, required=True)
    syn = sub.add_parser("synthetic", help="write seeded synthetic rows of the same schema")
    syn.add_argument("--out", type=Path, required=True)
    syn.add_argument("--rows", type=int, required=True)
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--mean-shift", action="append", default=[], metavar="FEATURE=DELTA")
    syn.add_argument("--variance-scale", action="append", default=[], metavar="FEATURE=FACTOR")
    syn.add_argument("--new-category", action="append", default=[], metavar="FEATURE=CATEGORY:SHARE")
    syn.add_argument("--missing-surge", action="append", default=[], metavar="FEATURE=SHARE")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "real":
        frame = load_adult()
    else:
        try:
            frame = synthesize(args.rows, args.seed, drift_from_args(args))
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    path = write_csv(frame, args.out)
    print(f"wrote {len(frame)} rows to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

