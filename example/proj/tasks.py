"""Tasks that call the example API as the service account."""

import os
import time

from celery_svcjwt import AuthenticatedTask

from .celery import app


@app.task(base=AuthenticatedTask, bind=True)
def sync_item(self, pk):
    """Read one item from the API; return it with the process that did the work."""
    started = time.perf_counter()
    response = self.api.get(f"api/items/{pk}/")
    response.raise_for_status()
    elapsed = time.perf_counter() - started
    stats = self.api.manager.stats
    return {
        "item": response.json(),
        "pid": os.getpid(),
        "logins": stats.logins,
        "refreshes": stats.refreshes,
        "seconds": elapsed,
    }


@app.task
def sync_item_seed(pk):
    """The same task as the seed article writes it: log in over HTTP on every run.

    Kept for comparison (the demo and the benchmarks): every run costs the API
    a full password hash, and the token is never reused or refreshed.
    """
    import requests

    started = time.perf_counter()
    base = os.environ["SVCJWT_API_URL"]
    login = requests.post(
        f"{base}api/token/",
        json={"username": os.environ["SVC_ACCT_USER"], "password": os.environ["SVC_ACCT_PASS"]},
        timeout=30,
    )
    login.raise_for_status()
    headers = {"Authorization": f"Bearer {login.json()['access']}"}
    response = requests.get(f"{base}api/items/{pk}/", headers=headers, timeout=30)
    response.raise_for_status()
    return {"item": response.json(), "pid": os.getpid(), "seconds": time.perf_counter() - started}
