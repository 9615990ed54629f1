"""db"""

from batchyard.db import schedules as _schedules  # noqa: F401  issue 5: register schedule tables on Base.metadata
