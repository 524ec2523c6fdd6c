"""The shop's Celery app, as a project has it: settings in the config, install() once."""

import os

from celery import Celery

import celery_svcjwt

app = Celery("shop", include=["tests.example_usage.shop.tasks"])
app.conf.update(
    broker_url=os.environ.get("SHOP_BROKER_URL", "memory://"),
    result_backend=os.environ.get("SHOP_RESULT_BACKEND", "cache+memory://"),
    # The account (SVC_ACCT_USER / SVC_ACCT_PASS) comes from the environment in production;
    # the tests have none, and need none.
    svcjwt_api_url="https://inventory.example.com/v2/",
    svcjwt_task_max_retries=3,
)
celery_svcjwt.install(app)
