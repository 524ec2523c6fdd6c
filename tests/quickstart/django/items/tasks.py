# items/tasks.py
from celery import shared_task

from celery_svcjwt import AuthenticatedTask


@shared_task(base=AuthenticatedTask, bind=True)
def sync_item(self, pk):
    response = self.api.get(f"api/items/{pk}/")  # resolves against CELERY_SVCJWT_API_URL
    response.raise_for_status()
    return response.json()
