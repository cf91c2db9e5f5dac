"""Orders of manufacturing services. Each order becomes a Bitrix24 deal."""

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models

from orders.catalogue import SERVICE_CHOICES


class Order(models.Model):
    class Status(models.TextChoices):
        NEW = "new", "New"
        CONFIRMED = "confirmed", "Confirmed"
        IN_PRODUCTION = "in_production", "In production"
        SHIPPED = "shipped", "Shipped"
        DONE = "done", "Done"
        CANCELLED = "cancelled", "Cancelled"

    class Currency(models.TextChoices):
        RUB = "RUB", "Russian rouble"
        USD = "USD", "US dollar"
        EUR = "EUR", "Euro"
        KZT = "KZT", "Kazakhstani tenge"
        BYN = "BYN", "Belarusian rouble"
        UAH = "UAH", "Ukrainian hryvnia"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="orders")
    service_id = models.CharField(max_length=64, choices=SERVICE_CHOICES)
    quantity = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    material = models.CharField(max_length=200, blank=True)
    comment = models.TextField(max_length=5000, blank=True)
    amount = models.DecimalField(
        max_digits=14, decimal_places=2, default=Decimal("0.00"), validators=[MinValueValidator(Decimal("0"))]
    )
    currency = models.CharField(max_length=3, choices=Currency.choices, default=Currency.RUB)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.NEW, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    bitrix_deal_id = models.PositiveBigIntegerField(null=True, blank=True, db_index=True)
    # What the worker last sent (issue 20): the product rows' fingerprint (rows go again only
    # when it changes) and the pipeline the deal is in (a change of pipeline is a move).
    # NULL pipeline: a deal synced before pipelines were mapped, i.e. the default pipeline 0.
    bitrix_rows_hash = models.CharField(max_length=64, blank=True, default="", editable=False)
    bitrix_category_id = models.PositiveIntegerField(null=True, blank=True, editable=False)

    # The fields whose change must reach Bitrix (see crmbridge.bitrix.mapping).
    BITRIX_FIELDS = ("service_id", "quantity", "material", "comment", "amount", "currency", "status", "owner_id")

    class Meta:
        ordering = ("-id",)

    def __str__(self) -> str:
        return f"Order #{self.pk} ({self.service_id} x {self.quantity})"
