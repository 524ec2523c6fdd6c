# proj/celery.py
import os

from celery import Celery

import celery_svcjwt

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")

app = Celery("proj")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
celery_svcjwt.install(app)  # worker bootstep, --svcjwt-* options; safe to call twice
