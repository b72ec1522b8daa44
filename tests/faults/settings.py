"""Settings of the processes the fault tests start (django-q2 clusters, the web server): Kioku's
own settings with short leases, so a fault plays out in seconds. The documented way to change a
tuning setting (config/settings.py): a settings module of one's own."""

from config.settings import *  # noqa: F403
from config.settings import Q_CLUSTER

# A dead worker's rows come back after 4 s instead of 2 min.
KIOKU_EMBEDDING_LEASE_SECONDS = 4
KIOKU_EMBEDDING_MAX_ATTEMPTS = 3
KIOKU_EMBEDDING_BACKOFF_SECONDS = 1
# Small batches, so two clusters share 500 documents instead of one claiming them all.
KIOKU_EMBEDDING_CLAIM_ROWS = 25
# A task whose worker was killed is delivered again soon (django-q2 waits `retry` seconds).
Q_CLUSTER = {**Q_CLUSTER, "retry": Q_CLUSTER["timeout"] + 2, "poll": 0.2}
