"""``/orders``, ``/orders/<id>``, ``/services``.

No trailing slash, as the specification's curl examples use; the variant with
a slash is accepted too (left out of the schema so each operation appears once).
"""

from bitrixsync.routes import slash_optional
from orders import views

urlpatterns = [
    *slash_optional("orders", views.OrderListCreateApi, name="order-list"),
    *slash_optional("orders/<int:pk>", views.OrderDetailApi, name="order-detail"),
    *slash_optional("services", views.ServiceListApi, name="service-list"),
]
