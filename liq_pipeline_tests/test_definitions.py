import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from liq_pipeline.clients import NEWHEDGE_METRICS
from liq_pipeline.definitions import build_definitions, parse_symbols
from liq_pipeline.partitions import parse_start_date
from liq_pipeline.warehouse.tables import get_table


def test_symbols_are_normalised_and_deduplicated():
    assert parse_symbols(" btc, ETH ,btc,") == ["BTC", "ETH"]


@pytest.mark.parametrize("value", ["", " , ", "BTC;ETH", "BTC,ET-H"])
def test_bad_symbols_are_refused_with_the_expected_form(value):
    with pytest.raises(ValueError) as err:
        parse_symbols(value)
    assert str(err.value) == (
        f"LIQ_KWERY_SYMBOLS must be comma-separated symbols like 'BTC,ETH', got {value!r}"
    )


@pytest.mark.parametrize("value", ["2026-13-01", "01/03/2026", "yesterday"])
def test_bad_start_dates_are_refused(value):
    with pytest.raises(ValueError) as err:
        parse_start_date(value)
    assert str(err.value) == (
        f"LIQ_START_DATE must be a UTC calendar day written YYYY-MM-DD, got {value!r}"
    )


def test_a_future_start_date_is_refused():
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    with pytest.raises(ValueError) as err:
        parse_start_date(tomorrow.isoformat())
    assert (
        str(err.value)
        == f"LIQ_START_DATE {tomorrow} is in the future; no partition would exist yet"
    )


def test_one_asset_per_symbol_and_partitions_from_the_start_date():
    defs = build_definitions(start_date="2026-02-01", symbols=("BTC", "SOL"))
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {"kwery_liquidations_btc", "kwery_liquidations_sol"} <= keys
    assert {
        f"kwery_liquidation_{kind}_{s}" for kind in ("bars", "cascades") for s in ("btc", "sol")
    } <= keys
    assert len(keys) == 2 + 2 * 2 + 8 + 1
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert (
        groups["kwery_liquidation_bars_sol"]
        == groups["kwery_liquidation_cascades_sol"]
        == ("analytics")
    )
    partitions = graph.get(dg.AssetKey("kwery_liquidations_sol")).partitions_def
    assert partitions.get_first_partition_key() == "2026-02-01"
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.partitions_def == partitions
        assert node.backfill_policy == dg.BackfillPolicy.single_run()
    checks = {c.name for c in graph.asset_check_keys}
    assert "reconciles_with_newhedge_binance" in checks
    # Without BTC there is nothing to reconcile with Newhedge's Bitcoin figures.
    no_btc = build_definitions(start_date="2026-02-01", symbols=("ETH",)).resolve_asset_graph()
    assert "reconciles_with_newhedge_binance" not in {c.name for c in no_btc.asset_check_keys}


@pytest.mark.e2e
def test_loading_with_a_bad_environment_fails_with_the_variable_named():
    env = {**os.environ, "LIQ_START_DATE": "2026/01/01"}
    result = subprocess.run(
        [sys.executable, "-c", "import liq_pipeline.definitions"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert (
        "ValueError: LIQ_START_DATE must be a UTC calendar day written YYYY-MM-DD, got '2026/01/01'"
        in result.stderr
    )


def test_a_missing_api_key_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("KWERY_API_KEY", raising=False)
    monkeypatch.setenv("LIQ_WAREHOUSE_URL", f"sqlite:///{tmp_path / 'w.sqlite'}")
    defs = build_definitions(start_date="2026-02-01")
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance, pytest.raises(dg.DagsterInvalidConfigError) as err:
        job.execute_in_process(
            instance=instance,
            partition_key="2026-02-02",
            asset_selection=[dg.AssetKey("kwery_liquidations_btc")],
        )
    assert (
        'You have attempted to fetch the environment variable "KWERY_API_KEY" which is not set'
        in str(err.value)
    )


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("home", "message"),
    [
        (None, "DAGSTER_HOME is not set: Dagster keeps this command's run history in a temporary "),
        ("empty", "has no dagster.yaml: Dagster runs with its defaults, without the one-run-per"),
        ("no-pools", "sets no concurrency pools: concurrent runs could exceed the APIs' rate"),
        ("project", None),
    ],
)  # fmt: skip
def test_loading_warns_when_dagster_home_is_not_the_projects(tmp_path, home, message):
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    if home is not None:
        env["DAGSTER_HOME"] = str(tmp_path)
    if home == "no-pools":
        (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    if home == "project":
        (tmp_path / "dagster.yaml").write_text(Path("dagster.yaml").read_text())
    result = subprocess.run(
        [sys.executable, "-c", "import liq_pipeline.definitions"],
        env=env, capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    if message is None:
        assert "DAGSTER_HOME" not in result.stderr and "pools" not in result.stderr
    else:
        assert message in result.stderr


ASSET_MODULES = {
    "kwery_liquidations_btc": "kwery.py",
    "kwery_liquidations_sol": "kwery.py",
    "kwery_liquidation_bars_btc": "analytics.py",
    "kwery_liquidation_cascades_btc": "analytics.py",
    "kwery_liquidation_bars_sol": "analytics.py",
    "kwery_liquidation_cascades_sol": "analytics.py",
    **{metric: "newhedge.py" for metric in NEWHEDGE_METRICS},
    "daily_liquidation_totals": "totals.py",
}
SOURCES = {
    "kwery.py": ("kwery", "paid-api"),
    "newhedge.py": ("newhedge", "paid-api"),
    "analytics.py": ("warehouse", "free"),
    "totals.py": ("warehouse", "free"),
}


@pytest.mark.parametrize(
    ("url", "storage"),
    [
        (None, "sqlite"),  # the default: the SQLite file beside the instance
        ("sqlite:////srv/liq/warehouse.sqlite", "sqlite"),
        ("postgresql+psycopg2://liq@db.example:5432/liq", "postgresql"),
    ],
)
def test_every_asset_explains_itself_in_the_catalog(monkeypatch, url, storage):
    if url is None:
        monkeypatch.delenv("LIQ_WAREHOUSE_URL", raising=False)
    else:
        monkeypatch.setenv("LIQ_WAREHOUSE_URL", url)
    defs = build_definitions(start_date="2026-02-01", symbols=("BTC", "SOL"))
    specs = {spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()}
    assert set(specs) == set(ASSET_MODULES)
    for name, spec in specs.items():
        module = ASSET_MODULES[name]
        source, cost = SOURCES[module]
        assert spec.description and spec.description.strip(), name
        assert list(spec.owners) == ["team:data-platform"], name
        assert {k: v for k, v in spec.tags.items() if not k.startswith("dagster/")} == {
            "domain": "liquidations",
            "source": source,
            "cost": cost,
        }, name
        assert spec.kinds == {"python", "pandas", storage}, name
        table = spec.metadata["warehouse/table"]
        assert spec.metadata["dagster/table_name"] == table == get_table(table).name, name
        schema = spec.metadata["dagster/column_schema"]
        assert [c.name for c in schema.columns] == list(get_table(table).column_names), name
        assert all(c.description and c.description.strip() for c in schema.columns), name
        [ref] = spec.metadata["dagster/code_references"].code_references
        assert isinstance(ref, dg.LocalFileCodeReference), name
        path = Path(ref.file_path)
        assert path == Path(__file__).parents[1] / "liq_pipeline" / "assets" / module, name
        # The line of the asset's decorator: where a reader starts.
        assert path.read_text().splitlines()[ref.line_number - 1].lstrip().startswith("@dg."), name
    graph = defs.resolve_asset_graph()
    assert graph.asset_check_keys
    for check_key in graph.asset_check_keys:
        description = graph.get(check_key).description
        assert description and description.strip(), check_key


@pytest.mark.parametrize(
    "url", ["mysql://u@h/db", "not a url", "postgresql+psycopg2://u:x@127.0.0.1:notaport/db"]
)
def test_an_unsupported_warehouse_url_loads_without_a_storage_kind(monkeypatch, url):
    # The runs fail with the reason (test_e2e_reliability); the catalog just cannot say where.
    monkeypatch.setenv("LIQ_WAREHOUSE_URL", url)
    defs = build_definitions(start_date="2026-02-01")
    assert {frozenset(s.kinds) for s in defs.resolve_all_asset_specs()} == {
        frozenset({"python", "pandas"})
    }
