"""The shop's tasks: they call the inventory API as the service account."""

from celery_svcjwt import AuthenticatedTask, CredentialsRejected

from .celery import app


@app.task(base=AuthenticatedTask, bind=True)
def fetch_item(self, pk):
    response = self.api.get(f"items/{pk}/")
    response.raise_for_status()
    return response.json()


@app.task(base=AuthenticatedTask, bind=True)
def restock(self, pk, quantity):
    response = self.api.post(f"items/{pk}/restock/", json={"quantity": quantity})
    response.raise_for_status()
    return response.json()["stock"]


@app.task(base=AuthenticatedTask, bind=True)
def catalog(self):
    """Every item name, following DRF's pagination (its ``next`` links are absolute URLs).

    A rejected service account is reported, not raised: someone must fix the credentials.
    """
    names = []
    url = "items/"
    try:
        while url:
            page = self.api.get(url).json()
            names += [item["name"] for item in page["results"]]
            url = page["next"]
    except CredentialsRejected:
        return {"error": "the inventory API refused the service account"}
    return names
