# items/views.py: an endpoint only an authenticated user reaches (see REST_FRAMEWORK)
from rest_framework.decorators import api_view
from rest_framework.response import Response


@api_view(["GET"])
def item(request, pk):
    return Response({"id": pk, "seen_by": request.user.get_username()})
