"""Optional bindings to the libraries agents already run on.

Each binding needs its library, installed as an extra, and is imported only by code that asks
for it, so `import tracengent` never imports any of them:

    pip install "tracengent[fastapi]"   # tracengent.integrations.fastapi
    pip install "tracengent[flask]"     # tracengent.integrations.flask
    pip install "tracengent[otel]"      # tracengent.integrations.opentelemetry
    pip install "tracengent[mcp]"       # tracengent.integrations.mcp

The web bindings expose `install_tracengent(app, client)` and `require_agent_permission(permission)`; a
denied request is answered 403 with `{"error": "forbidden", "permission": ..., "reason": ...}`.
"""
