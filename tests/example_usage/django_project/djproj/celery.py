from celery import Celery

import celery_svcjwt

app = Celery("djproj")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
celery_svcjwt.install(app)
