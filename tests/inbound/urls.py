"""The site's routes plus the inbound endpoint, until ``crmbridge.inbound.urls`` is included by the site.

Once it is, this module changes nothing (the first matching route wins and both
point at the same view) and can be deleted with the ``urls`` marks.
"""

from django.urls import include, path

from bitrixsync.urls import urlpatterns as site_urlpatterns

urlpatterns = [path("", include("crmbridge.inbound.urls")), *site_urlpatterns]
