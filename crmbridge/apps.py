from django.apps import AppConfig


class CrmbridgeConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "crmbridge"
