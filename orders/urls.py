"""``/orders``, ``/orders/<id>``, ``/services``.

No trailing slash, as the specification's curl examples use; the variant with
a slash is accepted too (left out of the schema so each operation appears once).
"""

from django.urls import path

from orders import views

urlpatterns = [
    path("orders", views.OrderListCreateApi.as_view(), name="order-list"),
    path("orders/", views.OrderListCreateApi.as_view(schema=None)),
    path("orders/<int:pk>", views.OrderDetailApi.as_view(), name="order-detail"),
    path("orders/<int:pk>/", views.OrderDetailApi.as_view(schema=None)),
    path("services", views.ServiceListApi.as_view(), name="service-list"),
    path("services/", views.ServiceListApi.as_view(schema=None)),
]
