"""The diagnostics API: the specification's two status endpoints."""
