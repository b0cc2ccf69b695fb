"""The Celery app: Redis broker and result backend from settings, JSON only, late acks, requeue on worker loss.

Workers start with `celery -A ingest.app worker`; the broker comes from LEXLIP_REDIS_URL. A batch must end well
inside the broker's visibility timeout, or Redis would hand it to a second worker: the hard time limit is 90% of it
(the pipeline stops starting new items at half of it and hands the rest to a retry). Children are replaced after a
batch once over three quarters of `LEXLIP_WORKER_MEMORY_MB`. Storing a result and publishing a retry wait out a
Redis restart (retried with backoff for minutes) instead of failing a batch whose documents are written.
"""

from __future__ import annotations

from celery import Celery

from lexlip_es.settings import Settings

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
INGEST_QUEUE = "lexlip-ingest"
"""Ingest batches have their own queue: `lexlip worker` consumes it (and the default queue for `health`)."""


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or Settings.from_env()
    url = settings.redis_url or DEFAULT_REDIS_URL
    app = Celery("lexlip", broker=url, backend=url, include=["ingest.tasks"])
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        result_expires=24 * 3600,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_hijack_root_logger=False,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        task_track_started=True,
        task_routes={"lexlip.ingest_batch": {"queue": INGEST_QUEUE}},
        task_time_limit=max(1, int(settings.visibility_timeout_s * 0.9)),
        # a Redis restart must not turn finished batches into failed ones: results and retries wait for it
        result_backend_always_retry=True,
        result_backend_max_retries=60,
        result_backend_max_sleep_between_retries_ms=5000,
        task_publish_retry_policy={"max_retries": 30, "interval_start": 0, "interval_step": 1, "interval_max": 5},
        worker_proc_alive_timeout=120,
        **(
            {"worker_max_memory_per_child": settings.worker_memory_mb * 1024 * 3 // 4}
            if settings.worker_memory_mb
            else {}
        ),
    )
    return app


app = create_app()
