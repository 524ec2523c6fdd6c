"""Counts requests per path and status, so the demo and tests can see what reached the API.

``GET /_stats/`` returns the counts; ``POST /_stats/reset/`` zeroes them.  For
the example only: a real API would export metrics instead.
"""

import json
import threading
from collections import Counter

from django.http import HttpResponse

_lock = threading.Lock()
_counts: Counter[str] = Counter()


class CountRequests:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path == "/_stats/":
            with _lock:
                body = json.dumps(dict(_counts))
            return HttpResponse(body, content_type="application/json")
        if request.path == "/_stats/reset/":
            with _lock:
                _counts.clear()
            return HttpResponse("{}", content_type="application/json")
        response = self.get_response(request)
        with _lock:
            _counts[request.path] += 1
            _counts[f"{request.path} {response.status_code}"] += 1
        return response
