"""Order endpoints. Views parse and answer; ``orders.services`` writes, ``orders.selectors`` reads."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from orders import selectors, services
from orders.catalogue import SERVICES
from orders.pagination import OrderPagination
from orders.serializers import (
    OrderCreateInputSerializer,
    OrderOutputSerializer,
    OrderUpdateInputSerializer,
    ServiceOutputSerializer,
)


class OrderListCreateApi(APIView):
    """Your orders, newest first (staff: everyone's); and placing a new one."""

    pagination_class = OrderPagination

    @extend_schema(responses=OrderOutputSerializer(many=True), summary="List orders (own; staff: all)")
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        orders = selectors.orders_visible_to(request.user)
        page = paginator.paginate_queryset(orders, request, view=self)
        return paginator.get_paginated_response(OrderOutputSerializer(page, many=True).data)

    @extend_schema(
        request=OrderCreateInputSerializer,
        responses={201: OrderOutputSerializer},
        summary="Place an order",
    )
    def post(self, request: Request) -> Response:
        serializer = OrderCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        order = services.create_order(owner=request.user, **serializer.validated_data)
        return Response(OrderOutputSerializer(order).data, status=status.HTTP_201_CREATED)


class OrderDetailApi(APIView):
    """One order. Another user's order answers 404.

    ``PUT`` is partial, like ``PATCH``: the specification's example
    ``curl -X PUT /orders/123 -d '{"quantity": 5}'`` must change the quantity
    and leave the rest as it is. Read-only fields sent back (``owner``,
    ``bitrix_deal_id``...) are ignored; unknown fields are a 400. Who may
    change the status: see ``orders/services.py``.
    """

    @extend_schema(responses=OrderOutputSerializer, summary="Get an order")
    def get(self, request: Request, pk: int) -> Response:
        order = selectors.order_visible_to(user=request.user, pk=pk)
        return Response(OrderOutputSerializer(order).data)

    @extend_schema(
        request=OrderUpdateInputSerializer,
        responses=OrderOutputSerializer,
        summary="Change an order (partial: send only what changes)",
    )
    def put(self, request: Request, pk: int) -> Response:
        return self._update(request, pk)

    @extend_schema(request=OrderUpdateInputSerializer, responses=OrderOutputSerializer, summary="Change an order")
    def patch(self, request: Request, pk: int) -> Response:
        return self._update(request, pk)

    def _update(self, request: Request, pk: int) -> Response:
        order = selectors.order_visible_to(user=request.user, pk=pk)
        serializer = OrderUpdateInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        order = services.update_order(order=order, actor=request.user, changes=serializer.validated_data)
        return Response(OrderOutputSerializer(order).data)


class ServiceListApi(APIView):
    """The service catalogue: the values ``service_id`` accepts."""

    authentication_classes = ()
    permission_classes = (AllowAny,)

    @extend_schema(responses=ServiceOutputSerializer(many=True), summary="List the services one can order")
    def get(self, request: Request) -> Response:
        services_list = [{"id": slug, "name": name} for slug, name in SERVICES.items()]
        return Response(ServiceOutputSerializer(services_list, many=True).data)
