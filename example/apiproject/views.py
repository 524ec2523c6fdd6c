"""The example API: a few authenticated endpoints that tasks call."""

from django.http import HttpResponseRedirect
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.response import Response


@api_view(["GET", "PUT", "PATCH", "DELETE"])
def item(request, pk):
    """An item, readable by any authenticated user."""
    return Response({"id": pk, "name": f"item {pk}", "seen_by": request.user.get_username()})


@api_view(["GET"])
def whoami(request):
    return Response({"username": request.user.get_username()})


@api_view(["POST", "PUT"])
def echo(request):
    """Echoes what it received: its size, and the JSON or form fields."""
    files = {name: f.size for name, f in request.FILES.items()}
    data = request.data if not files else {k: v for k, v in request.data.items() if k not in files}
    return Response({"length": len(request.body) if not files else None, "data": data, "files": files})


@api_view(["GET", "POST"])
@permission_classes([AllowAny])
def redirect(request):
    """Redirects to ``?to=<url>``, for the tests of the token's origin scoping."""
    return HttpResponseRedirect(request.GET["to"], status=int(request.GET.get("status", "302")))


@api_view(["GET"])
@permission_classes([AllowAny])
def headers(request):
    """Reports whether an Authorization header arrived (never its value)."""
    return Response({"authorization": "HTTP_AUTHORIZATION" in request.META})


@api_view(["GET"])
def ping(request):
    """The cheapest authenticated endpoint (the benchmarks' per-request target): the token is still checked."""
    return Response({})
