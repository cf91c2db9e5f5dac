"""Input and output shapes of the order endpoints (the rules live in ``orders.services``)."""

from __future__ import annotations

from decimal import Decimal

from rest_framework import serializers

from bitrixsync.api_errors import StrictInputMixin
from orders.catalogue import SERVICE_CHOICES, SERVICES
from orders.models import Order

# A sane ceiling: no single order of a manufacturing service runs to millions of parts.
MAX_QUANTITY = 1_000_000
_AMOUNT = Order._meta.get_field("amount")
_SERVICE_LIST = ", ".join(SERVICES)


class OrderOutputSerializer(serializers.ModelSerializer):
    service_name = serializers.SerializerMethodField()

    class Meta:
        model = Order
        fields = (
            "id",
            "owner",
            "service_id",
            "service_name",
            "quantity",
            "material",
            "comment",
            "amount",
            "currency",
            "status",
            "bitrix_deal_id",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields

    def get_service_name(self, order: Order) -> str:
        return SERVICES.get(order.service_id, order.service_id)


class OrderCreateInputSerializer(StrictInputMixin, serializers.Serializer):
    # Read-only parts of the answer may be sent back; they are dropped, never written.
    ignored_fields = ("id", "owner", "service_name", "status", "bitrix_deal_id", "created_at", "updated_at")

    service_id = serializers.ChoiceField(
        choices=SERVICE_CHOICES,
        # The message does not echo the input: it could be megabytes long.
        error_messages={"invalid_choice": f"Not a service in the catalogue. Choose one of: {_SERVICE_LIST}."},
        help_text="A slug from GET /services.",
    )
    # The specification's manual test posts only service_id: one part unless said otherwise.
    quantity = serializers.IntegerField(min_value=1, max_value=MAX_QUANTITY, default=1)
    material = serializers.CharField(
        max_length=Order._meta.get_field("material").max_length, required=False, allow_blank=True
    )
    comment = serializers.CharField(
        max_length=Order._meta.get_field("comment").max_length, required=False, allow_blank=True
    )
    amount = serializers.DecimalField(
        max_digits=_AMOUNT.max_digits,
        decimal_places=_AMOUNT.decimal_places,
        min_value=Decimal("0"),
        required=False,
        help_text="Staff only: customers see the price read-only (another value is a 400).",
    )
    currency = serializers.ChoiceField(
        choices=Order.Currency.choices,
        required=False,
        help_text="Staff only, like amount.",
        error_messages={"invalid_choice": f"Choose one of: {', '.join(Order.Currency.values)}."},
    )


class OrderUpdateInputSerializer(OrderCreateInputSerializer):
    """Every field optional (``PUT`` is partial); ``status`` as ``orders.services.update_order`` allows."""

    ignored_fields = tuple(f for f in OrderCreateInputSerializer.ignored_fields if f != "status")

    status = serializers.ChoiceField(
        choices=Order.Status.choices,
        required=False,
        error_messages={"invalid_choice": f"Choose one of: {', '.join(Order.Status.values)}."},
    )


class ServiceOutputSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The slug to send as service_id.")
    name = serializers.CharField()
