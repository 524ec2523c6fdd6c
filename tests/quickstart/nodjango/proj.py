# proj.py: a worker without Django
from celery import Celery

import celery_svcjwt
from celery_svcjwt import AuthenticatedTask

app = Celery("proj", broker="redis://127.0.0.1:6379/0")
app.conf.svcjwt_api_url = "https://api.example.com/"
celery_svcjwt.install(app)


@app.task(base=AuthenticatedTask, bind=True)
def sync_item(self, pk):
    response = self.api.get(f"api/items/{pk}/")
    response.raise_for_status()
    return response.json()
