"""HTTP: the console for district admins and operators, signed links, health and metrics (web/app.py),
and the vendor app's API under /api/v1/ (web/api.py), served by the daemon in one ASGI app."""
