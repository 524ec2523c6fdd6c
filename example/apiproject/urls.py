from django.urls import path
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView, TokenVerifyView

from . import views

urlpatterns = [
    path("api/token/", TokenObtainPairView.as_view()),
    path("api/token/refresh/", TokenRefreshView.as_view()),
    path("api/token/verify/", TokenVerifyView.as_view()),
    path("api/items/<int:pk>/", views.item),
    path("api/whoami/", views.whoami),
    path("api/echo/", views.echo),
    path("api/redirect/", views.redirect),
    path("api/headers/", views.headers),
    path("api/ping/", views.ping),
]
