"""The Django permissions of monitoring, spelled once (pages, API)."""

RUN_CHECK = "monitoring.add_monitorsnapshot"  # a check writes a snapshot
