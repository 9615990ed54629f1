"""Celery broker plumbing: the task table, broker connections, and nudges.

Infrastructure beside ``db``, ``storage`` and ``providers``: the services send nudges through
it without knowing Celery, and the worker builds its app from the same task table, so the
producer and consumer sides cannot disagree on a task's name or queue.
"""
