"""celery-svcjwt: Celery tasks that call a DRF + SimpleJWT API as a service account.

::

    app = Celery("proj")
    celery_svcjwt.install(app)

    @app.task(base=AuthenticatedTask, bind=True)
    def sync_item(self, pk):
        return self.api.get(f"api/items/{pk}/").json()
"""

from __future__ import annotations

from .errors import (
    AuthUnavailable,
    ConfigurationError,
    CredentialsRejected,
    ForeignOriginError,
    MalformedResponse,
    SvcJWTError,
)
from .install import install
from .task import AuthenticatedTask

__version__ = "0.1.0"

__all__ = [
    "AuthUnavailable",
    "AuthenticatedTask",
    "ConfigurationError",
    "CredentialsRejected",
    "ForeignOriginError",
    "MalformedResponse",
    "SvcJWTError",
    "__version__",
    "install",
]
