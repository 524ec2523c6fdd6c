from django.http import HttpResponse
from django.urls import path
from rest_framework_simplejwt.views import (
    TokenObtainPairView,
    TokenObtainSlidingView,
    TokenRefreshView,
    TokenVerifyView,
)


def hello(request):
    return HttpResponse("hello")


urlpatterns = [
    path("api/token/", TokenObtainPairView.as_view()),
    path("api/token/refresh/", TokenRefreshView.as_view()),
    path("api/token/verify/", TokenVerifyView.as_view()),
    path("api/token/sliding/", TokenObtainSlidingView.as_view()),
    path("custom/token/", hello),
]
