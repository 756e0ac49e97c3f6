"""Daily schedules: each tick materializes the partition of the day that just ended (UTC)."""

import datetime as dt

import dagster as dg

from liq_pipeline.jobs import AssetJob
from liq_pipeline.partitions import partition_key

# Kwery events of a day are final once it ends; Newhedge publishes a day at about 01:00 UTC.
KWERY_SCHEDULE_TIME = (0, 15)  # 00:15 UTC
NEWHEDGE_SCHEDULE_TIME = (1, 30)  # 01:30 UTC


def daily_schedule(job: AssetJob, hour: int, minute: int) -> dg.ScheduleDefinition:
    """A tick at hour:minute UTC asks for the run of the UTC day before the tick."""

    @dg.schedule(
        name=f"{job.name.removesuffix('_job')}_schedule",
        job=job,
        cron_schedule=f"{minute} {hour} * * *",
        execution_timezone="UTC",
        # Stopped: they spend paid API credits, so an operator turns them on.
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"At {hour:02d}:{minute:02d} UTC, {job.name} for the UTC day just ended.",
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        day = context.scheduled_execution_time.astimezone(dt.UTC) - dt.timedelta(days=1)
        key = partition_key(day)
        return dg.RunRequest(run_key=key, partition_key=key)

    return _schedule


def build_schedules(kwery_job: AssetJob, newhedge_job: AssetJob) -> list[dg.ScheduleDefinition]:
    return [
        daily_schedule(kwery_job, *KWERY_SCHEDULE_TIME),
        daily_schedule(newhedge_job, *NEWHEDGE_SCHEDULE_TIME),
    ]
