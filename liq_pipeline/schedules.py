"""Daily schedules: each tick materializes the partition of the day that just ended (UTC)."""

import dagster as dg

from liq_pipeline.jobs import AssetJob

# Kwery events of a day are final once it ends; Newhedge publishes a day at about 01:00 UTC.
KWERY_SCHEDULE_TIME = (0, 15)  # 00:15 UTC
NEWHEDGE_SCHEDULE_TIME = (1, 30)  # 01:30 UTC


def build_schedules(kwery_job: AssetJob, newhedge_job: AssetJob) -> list[dg.ScheduleDefinition]:
    """Both stopped by default: they spend paid API credits, so an operator turns them on."""
    return [
        dg.build_schedule_from_partitioned_job(
            job,
            name=f"{job.name.removesuffix('_job')}_schedule",
            hour_of_day=hour,
            minute_of_hour=minute,
            default_status=dg.DefaultScheduleStatus.STOPPED,
        )
        for job, (hour, minute) in (
            (kwery_job, KWERY_SCHEDULE_TIME),
            (newhedge_job, NEWHEDGE_SCHEDULE_TIME),
        )
    ]
