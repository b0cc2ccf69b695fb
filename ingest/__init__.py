"""Celery ingestion: the app, its tasks, and (later) the producer that enqueues a manifest."""
