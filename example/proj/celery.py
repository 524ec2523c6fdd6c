"""The demo's Celery app: what a user's ``proj/celery.py`` looks like with celery-svcjwt.

The broker defaults to kombu's filesystem transport (no server needed);
set CELERY_BROKER_URL to use Redis or RabbitMQ instead.
"""

import os
import tempfile

from celery import Celery

import celery_svcjwt

_spool = os.environ.get("EXAMPLE_SPOOL") or os.path.join(tempfile.gettempdir(), "celery-svcjwt-example")
for sub in ("queue", "processed", "results", "control"):
    os.makedirs(os.path.join(_spool, sub), exist_ok=True)

app = Celery("proj", include=["example.proj.tasks"])
app.conf.update(
    broker_url=os.environ.get("CELERY_BROKER_URL", "filesystem://"),
    # kombu's filesystem transport with atomic writes (see example/fsbroker.py)
    broker_transport=None if os.environ.get("CELERY_BROKER_URL") else "example.fsbroker:Transport",
    broker_transport_options={
        "data_folder_in": os.path.join(_spool, "queue"),
        "data_folder_out": os.path.join(_spool, "queue"),
        "processed_folder": os.path.join(_spool, "processed"),
        "store_processed": False,
        "control_folder": os.path.join(_spool, "control"),
    },
    result_backend=os.environ.get("CELERY_RESULT_BACKEND", "file://" + os.path.join(_spool, "results")),
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)
celery_svcjwt.install(app)
