from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "example.accounts"
    label = "accounts"
    default_auto_field = "django.db.models.AutoField"
