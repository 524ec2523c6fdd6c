"""Tasks that call the example API as the service account."""

import os

from celery_svcjwt import AuthenticatedTask

from .celery import app


@app.task(base=AuthenticatedTask, bind=True)
def sync_item(self, pk):
    """Read one item from the API; return it with the process that did the work."""
    response = self.api.get(f"api/items/{pk}/")
    response.raise_for_status()
    stats = self.api.manager.stats
    return {"item": response.json(), "pid": os.getpid(), "logins": stats.logins, "refreshes": stats.refreshes}
