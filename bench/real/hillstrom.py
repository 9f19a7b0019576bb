"""A real randomized campaign: Hillstrom's e-mail test (64,000 customers, Mens / Womens / no e-mail, 1/3 each).

    python bench/real/hillstrom.py --seed 0 --costs 0,0.03,0.06,0.08 --decisions-out d.csv --out h.json
    python bench/real/hillstrom.py --seeds 0,1,2,3,4 --out h.json        # several random halvings

Per seed the customers are halved at random. On the training half, parcours's own pipeline runs: the data are
converted into the data contract (customers, events, contacts with propensity 1/3), `features.build` computes
the point-in-time features at the campaign, `training.labels.response_dataset` labels each decision (outcome =
a visit within 14 days), and the response models are trained: the registered S-learner
(`training.pipeline.train_task`, through MLflow), the DR-learner of `training.uplift`, and — `parcours` — the
policy learner of `training.policy_learning` (cross-fitted DR scores; per price, a depth-2 policy tree searched
on them whose leaves depart from the best constant e-mail policy only where the DR gain exceeds kappa standard
errors, `--kappa`, default 1). Each sits behind the response model's
interface; on the other half the DecisionEngine decides with catalog cost c per e-mail (in visits): the e-mail
with the largest uplift − c, or none. Each policy's visits per customer are estimated by IPS with the known
propensity 1/3; net = visits − c × share e-mailed. Constant policies and a plain LightGBM S-learner on the raw
columns are measured on the same halves, with paired differences. See docs/policy-evaluation.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

if __package__ in (None, ""):  # run as `python bench/real/hillstrom.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.real._common import dataset_file, environment, missing_reason, write_json

FOLDER, FILENAME = "hillstrom", "hillstrom.csv.gz"
CATALOG_PATH = Path(__file__).with_name("hillstrom_catalog.yaml")
ARMS: tuple[str, ...] = ("No E-Mail", "Mens E-Mail", "Womens E-Mail")
CONTENT_OF: dict[str, str] = {"Mens E-Mail": "mens_email", "Womens E-Mail": "womens_email"}
ARM_OF_CONTENT: dict[str, str] = {v: k for k, v in CONTENT_OF.items()} | {"none": "No E-Mail"}
PROPENSITY = 1.0 / 3.0
CAMPAIGN = pd.Timestamp("2008-03-01 09:00", tz="UTC")  # the decision time (the data give no date)
MONTH = pd.Timedelta(days=30.44)
WINDOW_DAYS = 14
ATTRIBUTES: tuple[str, ...] = ("mens", "womens", "newbie", "zip_urban", "zip_rural", "channel_web", "channel_multi")
DEFAULT_COSTS: tuple[float, ...] = (0.0, 0.03, 0.06, 0.08)


# ---------------------------------------------------------------------------------------------- the contract


def read_hillstrom(data_dir: Path | None) -> pd.DataFrame:
    return pd.read_csv(dataset_file(data_dir, FOLDER, FILENAME))


def to_contract(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(customers, events, contacts) in the data contract.

    Customer history becomes events: last year's spend (`history`) is a purchase dated `recency` months before
    the campaign, on the web or by phone (`call`) as `channel` says (Multichannel: half on each); a newbie signed
    up just before that purchase, others a year and a half before. Everyone has e-mail consent (they were
    mailable). The campaign is one decision per customer (e-mail or none, propensity 1/3); its outcomes are
    events too: a visit = a product view the next day, a conversion = a purchase of `spend` two days later.
    """
    ids = np.array([f"h{i:05d}" for i in raw.index], dtype=object)
    last_buy = CAMPAIGN.floor("D") - raw["recency"].to_numpy() * MONTH
    newbie = raw["newbie"].to_numpy() == 1
    before = pd.Series(last_buy - pd.Timedelta(days=1))
    signup = before.where(newbie, CAMPAIGN.floor("D") - 18 * MONTH)
    customers = pd.DataFrame({"customer_id": ids, "signup_ts": pd.to_datetime(signup, utc=True)})
    for column in ("consent_email", "consent_sms", "consent_push", "consent_mail", "consent_call", "consent_ads"):
        customers[column] = column == "consent_email"
    channel = raw["channel"].to_numpy()
    multi = channel == "Multichannel"
    history = raw["history"].to_numpy(dtype=float)
    past = pd.DataFrame(
        {
            "customer_id": np.r_[ids, ids[multi]],
            "ts": np.r_[last_buy, last_buy[multi] - pd.Timedelta(days=3)],
            "event_type": "purchase",
            "channel": np.r_[np.where(channel == "Phone", "call", "web"), np.full(multi.sum(), "call")],
            "content": None,
            "value": np.r_[np.where(multi, history / 2, history), history[multi] / 2],
        }
    )
    visit, conversion = raw["visit"].to_numpy() == 1, raw["conversion"].to_numpy() == 1
    after = pd.DataFrame(
        {
            "customer_id": np.r_[ids[visit], ids[conversion]],
            "ts": np.r_[
                np.full(visit.sum(), CAMPAIGN + pd.Timedelta(days=1)),
                np.full(conversion.sum(), CAMPAIGN + pd.Timedelta(days=2)),
            ],
            "event_type": np.r_[np.full(visit.sum(), "product_view"), np.full(conversion.sum(), "purchase")],
            "channel": "web",
            "content": None,
            "value": np.r_[np.full(visit.sum(), np.nan), raw["spend"].to_numpy(dtype=float)[conversion]],
        }
    )
    events = pd.concat([past, after], ignore_index=True)
    events["ts"] = pd.to_datetime(events["ts"], utc=True).astype("datetime64[us, UTC]")
    segment = raw["segment"].to_numpy()
    contacts = pd.DataFrame(
        {
            "decision_id": np.array([f"hd{i:05d}" for i in raw.index], dtype=object),
            "customer_id": ids,
            "ts": pd.Series([CAMPAIGN] * len(raw)).astype("datetime64[us, UTC]"),
            "channel": np.where(segment == "No E-Mail", "none", "email"),
            "content": [CONTENT_OF.get(s, "none") for s in segment],
            "propensity": PROPENSITY,
            "policy": "hillstrom-randomized",
        }
    )
    return customers, events.sort_values("ts", kind="stable", ignore_index=True), contacts


def attributes(raw: pd.DataFrame) -> pd.DataFrame:
    """Customer attributes the events cannot carry (what was bought, where they live, how they buy)."""
    return pd.DataFrame(
        {
            "mens": raw["mens"].astype(float),
            "womens": raw["womens"].astype(float),
            "newbie": raw["newbie"].astype(float),
            "zip_urban": (raw["zip_code"] == "Urban").astype(float),
            "zip_rural": (raw["zip_code"] == "Rural").astype(float),
            "channel_web": (raw["channel"] == "Web").astype(float),
            "channel_multi": (raw["channel"] == "Multichannel").astype(float),
        }
    )


def decision_table(raw: pd.DataFrame, catalog: Any) -> tuple[pd.DataFrame, list[str]]:
    """One row per customer: the parcours features at the campaign, the attributes, the logged arm and the
    response label — all through parcours (contract → features.build → request features → labels)."""
    from features.build import build_features
    from features.request import add_request_features
    from training.labels import response_dataset

    customers, events, contacts = to_contract(raw)
    features = build_features(customers, events, contacts, [CAMPAIGN])
    features = features.set_index("customer_id").reindex(customers["customer_id"]).reset_index()
    features = add_request_features(features, CAMPAIGN)
    labels = response_dataset(contacts, events, catalog, WINDOW_DAYS, count_responses=False)
    one = labels.drop_duplicates("decision_id").set_index("decision_id").reindex(contacts["decision_id"])
    names = [c for c in features.columns if c not in {"customer_id", "event_timestamp"}]
    table = pd.concat([features, attributes(raw).reset_index(drop=True)], axis=1)
    table["decision_id"] = contacts["decision_id"].to_numpy()
    table["arm"] = raw["segment"].to_numpy()
    table["label"] = one["label"].to_numpy()
    return table, names + list(ATTRIBUTES)


# ---------------------------------------------------------------------------------------------- models


def _usable(frame: pd.DataFrame, names: list[str]) -> list[str]:
    """Numeric features that vary on this data and are not absolute times."""
    return [n for n in names if "epoch" not in n and frame[n].nunique(dropna=False) > 1]


def train_parcours_s_learner(train: pd.DataFrame, names: list[str], catalog: Any, home: Path, seed: int) -> Any:
    """The registered response model (S-learner), trained by training.pipeline.train_task and loaded back."""
    from journey.settings import Settings
    from training.datasets import TaskDataset
    from training.pipeline import train_task
    from training.policy_eval import load_version

    settings = Settings(home=home, seed=seed, response_window_days=WINDOW_DAYS)
    control = train["arm"] == ARMS[0]
    treated = train.loc[~control].assign(action_channel="email", action_content=train["arm"].map(CONTENT_OF))
    controls = [train.loc[control].assign(action_channel="none", action_content=c) for c in CONTENT_OF.values()]
    frame = pd.concat([treated, *controls], ignore_index=True)
    frame["customer_id"] = frame["decision_id"]
    frame["event_timestamp"] = CAMPAIGN
    frame["propensity"] = PROPENSITY
    split = pd.Series(
        np.where(np.random.default_rng(seed).random(len(frame)) < 0.2, "valid", "train"), index=frame.index
    )
    dataset = TaskDataset("response", frame, _usable(frame, names), "label", split, {"source": "hillstrom"})
    result = train_task("response", dataset, settings, catalog)
    assert result.version is not None
    return load_version(settings, "response", result.version.version)


def dr_learner_model(train: pd.DataFrame, names: list[str], catalog: Any, seed: int, template: Any) -> Any:
    """The DR-learner (training.uplift) behind the registered model's interface and metadata."""
    from training.uplift import DRLearner

    learner = _fit_on_arms(DRLearner(seed=seed), train, list(template.feature_names))
    return _behind_interface("hillstrom-dr-learner", learner, template)


def fit_policy_learner(train: pd.DataFrame, features: list[str], seed: int, kappa: float | None = None) -> Any:
    """The policy learner's cross-fitted DR scores on the training half (tuned per price by `policy_model`)."""
    from training.policy_learning import KAPPA, PolicyLearner

    learner = PolicyLearner(seed=seed, kappa=KAPPA if kappa is None else kappa)
    return _fit_on_arms(learner, train, features, names=True)


def policy_model(learner: Any, cost: float, template: Any) -> tuple[Any, dict[str, Any]]:
    """The policy tuned at this price behind the registered model's interface, and what it chose."""
    tuned = learner.tune(cost)
    return _behind_interface("hillstrom-policy-learner", tuned, template), tuned.choice.model_dump()


def _fit_on_arms(learner: Any, train: pd.DataFrame, features: list[str], names: bool = False) -> Any:
    """Fit a multi-arm learner (training.uplift interface) on the training half: arms 1, 2 vs control 0, p = 1/3.
    `names` passes the feature names (the policy learner reports its splits with them)."""
    X = train[features].to_numpy(dtype=np.float64)
    arm = train["arm"].map({a: i for i, a in enumerate(ARMS)}).to_numpy()
    extra = {"feature_names": features} if names else {}
    pscore = np.full(len(X), PROPENSITY)
    return learner.fit(X, arm, train["label"].to_numpy(float), arms=[1, 2], control=0, pscore=pscore, **extra)


def _behind_interface(name: str, learner: Any, template: Any) -> Any:
    """`learner` as a LoadedModel with the registered response model's features and metadata."""
    from journey.scoring import LoadedModel
    from training.uplift import ArmPredictor

    return LoadedModel(
        task="response",
        name=name,
        version="local",
        predictor=ArmPredictor(learner, _arm_of(template)),
        feature_names=template.feature_names,
        metadata=dict(template.metadata),
    )


def _arm_of(template: Any) -> dict[tuple[int, int], int]:
    channels = template.action_codes("action_channel")
    contents = template.action_codes("action_content")
    return {(channels["email"], contents["mens_email"]): 1, (channels["email"], contents["womens_email"]): 2}


def plain_s_learner(train: pd.DataFrame, test: pd.DataFrame, raw: pd.DataFrame, seed: int) -> np.ndarray:
    """The yardstick: LightGBM defaults on the raw Hillstrom columns + the arm; (n_test, 2) uplifts."""
    import lightgbm as lgb

    columns = ["recency", "history", "mens", "womens", "newbie", "zip", "chan", "arm"]

    def frame(rows: pd.DataFrame, arm: np.ndarray) -> pd.DataFrame:
        r = raw.loc[rows["row"]]
        return pd.DataFrame(
            {
                "recency": r["recency"].to_numpy(),
                "history": r["history"].to_numpy(),
                "mens": r["mens"].to_numpy(),
                "womens": r["womens"].to_numpy(),
                "newbie": r["newbie"].to_numpy(),
                "zip": r["zip_code"].map({"Urban": 0, "Surburban": 1, "Rural": 2}).to_numpy(),
                "chan": r["channel"].map({"Phone": 0, "Web": 1, "Multichannel": 2}).to_numpy(),
                "arm": arm,
            },
            columns=columns,
        )

    arm = train["arm"].map({a: i for i, a in enumerate(ARMS)}).to_numpy()
    model = lgb.LGBMClassifier(random_state=seed, verbose=-1, n_jobs=1)
    model.fit(frame(train, arm), train["label"].to_numpy(), categorical_feature=["zip", "chan", "arm"])
    p = [np.asarray(model.predict_proba(frame(test, np.full(len(test), a))))[:, 1] for a in range(3)]
    return np.column_stack([p[1] - p[0], p[2] - p[0]])


# ---------------------------------------------------------------------------------------------- decisions


def engine_arms(model: Any, test: pd.DataFrame, catalog: Any, cost: float) -> np.ndarray:
    """The DecisionEngine's choice per test customer with e-mail cost `cost`, as Hillstrom arm names."""
    from journey.policies import ContactPolicies, ContactState
    from journey.scoring import ModelSet
    from training.sim_policies import decide_all, nba_engine

    priced = catalog.model_copy(
        update={"channels": {"email": catalog.channels["email"].model_copy(update={"cost": cost})}}
    )
    engine = nba_engine(priced, ContactPolicies(), ModelSet(response=model), seed=0)
    states = [ContactState(consents={"consent_email": True}) for _ in range(len(test))]
    _, content, _ = decide_all(engine, test["decision_id"].astype(str).tolist(), test.reset_index(drop=True),
                               states, CAMPAIGN)  # fmt: skip
    return np.array([ARM_OF_CONTENT[str(c)] for c in content], dtype=object)


def uplift_arms(uplift: np.ndarray, cost: float) -> np.ndarray:
    """The same decision rule on an (n, 2) uplift matrix: the e-mail with the largest uplift − cost, or none."""
    net = uplift - cost
    best = net.argmax(axis=1)
    return np.where(net.max(axis=1) > 0, np.array(ARMS[1:], dtype=object)[best], ARMS[0])


def ips_value(chosen: np.ndarray, logged: np.ndarray, reward: np.ndarray, cost: float) -> dict[str, float]:
    """IPS visits per customer (propensity 1/3), SNIPS, the share e-mailed and the net of the e-mail cost."""
    from training.ope import ips, snips

    match = (chosen == logged).astype(float)
    est = ips(reward, logged, np.full(len(reward), PROPENSITY), match)
    sn = snips(reward, logged, np.full(len(reward), PROPENSITY), match)
    emailed = float(np.mean(chosen != ARMS[0]))
    return {
        "visits": est.value,
        "visits_se": est.se,
        "visits_snips": sn.value,
        "emailed_share": emailed,
        "net": est.value - cost * emailed,
    }


# ---------------------------------------------------------------------------------------------- one seed


def run_seed(
    raw: pd.DataFrame,
    table: pd.DataFrame,
    names: list[str],
    catalog: Any,
    seed: int,
    costs: Sequence[float],
    kappa: float | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    rng = np.random.default_rng(seed)
    in_eval = rng.permutation(len(table)) < len(table) // 2
    table = table.assign(row=raw.index.to_numpy())  # row number in hillstrom.csv
    train, test = table.loc[~in_eval].reset_index(drop=True), table.loc[in_eval].reset_index(drop=True)
    with tempfile.TemporaryDirectory(prefix="hillstrom-") as home:
        s_model = train_parcours_s_learner(train, names, catalog, Path(home), seed)
    dr_model = dr_learner_model(train, names, catalog, seed, s_model)
    learner = fit_policy_learner(train, list(s_model.feature_names), seed, kappa)
    plain = plain_s_learner(train, test, raw, seed)
    logged, reward = test["arm"].to_numpy(dtype=object), test["label"].to_numpy(float)
    per_cost: dict[str, Any] = {}
    choices: dict[str, Any] = {}
    decisions = []
    for cost in costs:
        model, choices[f"{cost:g}"] = policy_model(learner, cost, s_model)
        policies = {
            "parcours": engine_arms(model, test, catalog, cost),
            "parcours_dr_learner": engine_arms(dr_model, test, catalog, cost),
            "parcours_s_learner": engine_arms(s_model, test, catalog, cost),
            "s_learner_lgbm": uplift_arms(plain, cost),
            "no_email": np.full(len(test), ARMS[0], dtype=object),
            "all_mens": np.full(len(test), ARMS[1], dtype=object),
            "all_womens": np.full(len(test), ARMS[2], dtype=object),
        }
        per_cost[f"{cost:g}"] = {name: ips_value(chosen, logged, reward, cost) for name, chosen in policies.items()}
        decisions.append(pd.DataFrame({"row": test["row"], "cost": cost, "arm": policies["parcours"]}))
    train_rows = pd.DataFrame({"row": train["row"], "cost": np.nan, "arm": None})
    frame = pd.concat([*decisions, train_rows], ignore_index=True).sort_values(["row", "cost"], ignore_index=True)
    result = {"seed": seed, "n_train": len(train), "n_eval": len(test), "costs": per_cost, "policy_choice": choices}
    return result, frame


BASELINES: tuple[str, ...] = ("s_learner_lgbm", "no_email", "all_mens", "all_womens")


def _spread(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}


def summarise(per_seed: list[dict[str, Any]], costs: Sequence[float]) -> dict[str, Any]:
    """Per cost: each policy's net mean ± sd over seeds, and parcours − each baseline paired on the same halves
    (mean, sd, and how many seeds parcours wins, ties, loses)."""
    out: dict[str, Any] = {}
    for cost in costs:
        key = f"{cost:g}"
        names = list(per_seed[0]["costs"][key])
        net = {n: np.array([s["costs"][key][n]["net"] for s in per_seed]) for n in names}
        stats = {}
        for name in names:
            visits = np.array([s["costs"][key][name]["visits"] for s in per_seed])
            shares = np.array([s["costs"][key][name]["emailed_share"] for s in per_seed])
            spread = _spread(net[name])
            stats[name] = {
                "net_mean": spread["mean"],
                "net_std": spread["std"],
                "visits_mean": float(visits.mean()),
                "emailed_share_mean": float(shares.mean()),
            }
        paired = {}
        for name in BASELINES:
            diff = net["parcours"] - net[name]
            paired[name] = {
                **{f"diff_{k}": v for k, v in _spread(diff).items()},
                "wins": int((diff > 1e-12).sum()),
                "ties": int((np.abs(diff) <= 1e-12).sum()),
                "losses": int((diff < -1e-12).sum()),
            }
        best_other = max(BASELINES, key=lambda n: stats[n]["net_mean"])
        out[key] = {
            "policies": stats,
            "best_baseline": best_other,
            "parcours_beats_all_baselines": all(paired[n]["diff_mean"] > 1e-12 for n in BASELINES),
            "parcours_minus_baseline": paired,
            "policy_deviating_share": [s["policy_choice"][key]["deviating_share"] for s in per_seed],
            "policy_splits": [s["policy_choice"][key]["splits"] for s in per_seed],
        }
    return out


def run(
    data_dir: Path | None,
    seeds: Sequence[int],
    costs: Sequence[float],
    sample: int | None = None,
    kappa: float | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    from journey.catalog import load_catalog

    path = dataset_file(data_dir, FOLDER, FILENAME)
    reason = missing_reason(path)
    if reason:
        return {"skipped": reason}, pd.DataFrame(columns=["row", "cost", "arm"])
    started = time.perf_counter()
    raw = read_hillstrom(data_dir)
    if sample is not None and sample < len(raw):  # a fixed random subset, for quick checks (rows keep their number)
        raw = raw.sample(n=sample, random_state=12345).sort_index()
    catalog = load_catalog(CATALOG_PATH)
    table, names = decision_table(raw, catalog)
    per_seed, first = [], None
    for seed in seeds:
        result, decisions = run_seed(raw, table, names, catalog, seed, costs, kappa)
        per_seed.append(result)
        first = decisions if first is None else first
        print(f"seed {seed}: " + "; ".join(
            f"c={c}: parcours {v['parcours']['net']:.4f} "
            f"(deviates {result['policy_choice'][c]['deviating_share']:.0%}) "
            f"s-learner {v['s_learner_lgbm']['net']:.4f} mens {v['all_mens']['net']:.4f} "
            f"none {v['no_email']['net']:.4f}" for c, v in result["costs"].items()), flush=True)  # fmt: skip
    payload = {
        "benchmark": "hillstrom",
        "outcome": "visit within 2 weeks",
        "propensity": PROPENSITY,
        "seeds": list(seeds),
        "customers": len(raw),
        "costs": list(costs),
        "policy_kappa": kappa,
        "summary": summarise(per_seed, costs),
        "per_seed": per_seed,
        "runtime_seconds": round(time.perf_counter() - started, 1),
        "environment": environment(),
    }
    assert first is not None
    return payload, first


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "hillstrom")
    parser.add_argument("--out", type=Path, required=True, help="JSON results")
    parser.add_argument("--seed", type=int, default=None, help="one random halving (default 0)")
    parser.add_argument("--seeds", type=str, default=None, help="several halvings, e.g. 0,1,2,3,4")
    parser.add_argument("--costs", type=str, default=",".join(f"{c:g}" for c in DEFAULT_COSTS))
    parser.add_argument("--decisions-out", type=Path, default=None, help="CSV of the decisions (first seed)")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--sample", type=int, default=None, help="use a fixed random subset of N customers")
    parser.add_argument(
        "--kappa", type=float, default=None, help="standard errors a leaf's gain must clear to deviate (default 1)"
    )
    args = parser.parse_args(argv)
    if args.kappa is not None and args.kappa < 0:
        parser.error(f"--kappa must be >= 0, got {args.kappa}")
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed if args.seed is not None else 0]
    payload, decisions = run(args.data_dir, seeds, _floats(args.costs), args.sample, args.kappa)
    write_json(args.out, payload)
    if args.decisions_out is not None:
        args.decisions_out.parent.mkdir(parents=True, exist_ok=True)
        decisions.to_csv(args.decisions_out, index=False)
    if "skipped" in payload:
        print(f"hillstrom: skipped — {payload['skipped']}", file=sys.stderr)
        return 0
    for cost, entry in payload["summary"].items():
        p, best = entry["policies"], entry["best_baseline"]
        d = entry["parcours_minus_baseline"][best]
        print(
            f"cost {cost}: parcours {p['parcours']['net_mean']:.4f} ± {p['parcours']['net_std']:.4f}; "
            f"best baseline {best} {p[best]['net_mean']:.4f}; paired diff {d['diff_mean']:+.4f} ± {d['diff_std']:.4f} "
            f"(W/T/L {d['wins']}/{d['ties']}/{d['losses']}); beats all: {entry['parcours_beats_all_baselines']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
