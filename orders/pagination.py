"""Page-number pagination for order lists: ``?page=2&page_size=50``."""

from rest_framework.pagination import PageNumberPagination


class OrderPagination(PageNumberPagination):
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100
