"""liq-backfill's plan: chunks, commands and the failure summary (the runs are in test_e2e_cli)."""

import datetime as dt
import json

import pytest

from liq_pipeline.backfill import chunks, job_command, main, why_it_failed

D = dt.date.fromisoformat


def test_a_range_is_cut_into_consecutive_chunks_the_last_one_shorter():
    assert chunks(D("2026-01-30"), D("2026-02-05"), 3) == [
        (D("2026-01-30"), D("2026-02-01")),
        (D("2026-02-02"), D("2026-02-04")),
        (D("2026-02-05"), D("2026-02-05")),
    ]
    assert chunks(D("2026-03-01"), D("2026-03-01"), 90) == [(D("2026-03-01"), D("2026-03-01"))]


def test_each_chunk_is_one_single_run_of_the_job():
    command = job_command("backfill_job", D("2026-03-01"), D("2026-03-31"))
    assert command[1:7] == [
        "job",
        "execute",
        "-m",
        "liq_pipeline.definitions",
        "-j",
        "backfill_job",
    ]
    assert json.loads(command[-1]) == {
        "dagster/asset_partition_range_start": "2026-03-01",
        "dagster/asset_partition_range_end": "2026-03-31",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["2026-03-10", "2026-03-01"], "the range 2026-03-10...2026-03-01 is reversed"),
        (["2026-03-01", "2026-03-10", "--chunk-days", "0"], "--chunk-days must be at least 1"),
    ],
)
def test_bad_arguments_fail_before_anything_runs(capsys, args, message):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_the_failure_summary_is_the_logged_errors_once():
    log = "\n".join(
        [
            "2026-12-02 ... STEP_FAILURE - Execution of step failed.",
            "dagster._core.definitions.events.Failure: Kwery API error 401 unauthorized ...",
            "  File x.py",
            "dagster._core.definitions.events.Failure: Kwery API error 401 unauthorized ...",
            "Error: Run 80b9 resulted in failure.",
        ]
    )
    assert why_it_failed(log) == (
        "dagster._core.definitions.events.Failure: Kwery API error 401 unauthorized ...\n"
        "Error: Run 80b9 resulted in failure."
    )
    assert why_it_failed("a\nb") == "a\nb"
