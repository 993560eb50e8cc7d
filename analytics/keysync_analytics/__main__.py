"""`python -m keysync_analytics`: runs the job (a local mini-cluster when started
this way; the operator's cluster when submitted by the FlinkDeployment)."""

import os
import sys

from .job import build, jars_from
from .settings import SettingsError, from_environment


def main() -> int:
    try:
        settings = from_environment(os.environ)
    except SettingsError as error:
        print(f"keysync-analytics: {error}", file=sys.stderr)
        return 2
    env = build(settings, jars_from(os.environ.get("KEYSYNC_FLINK_JARS", "")))
    print(
        f"keysync-analytics: reading {settings.usage_topic}, writing "
        f"{settings.minutes_topic} and {settings.alerts_topic}",
        flush=True,
    )
    env.execute("keysync-analytics")
    return 0


if __name__ == "__main__":
    sys.exit(main())
