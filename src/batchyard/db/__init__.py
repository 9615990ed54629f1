"""db"""

from batchyard.db import schedules as _schedules  # noqa: F401  registers the schedule tables on Base.metadata
