from django.apps import AppConfig


class CrmbridgeConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "crmbridge"

    def ready(self) -> None:
        # Saving an order or a user queues its Bitrix operation.
        from crmbridge import checks  # noqa: F401  (registers the system checks)
        from crmbridge.publishing import signals

        signals.connect()
