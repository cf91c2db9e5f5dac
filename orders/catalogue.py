"""The service catalogue: the slugs an order's ``service_id`` may take."""

SERVICES = {
    "cnc-milling": "CNC milling",
    "cnc-turning": "CNC turning",
    "laser-cutting": "Laser cutting",
    "3d-printing": "3D printing",
    "sheet-metal": "Sheet metal fabrication",
    "injection-molding": "Injection molding",
    "welding": "Welding",
}

SERVICE_CHOICES = list(SERVICES.items())
