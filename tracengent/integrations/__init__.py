"""Optional web-framework bindings: gate a route on an agent permission the platform decides.

Each binding needs its framework, installed as an extra, and is imported only by code that asks
for it, so `import tracengent` never imports a web framework:

    pip install "tracengent[fastapi]"   # tracengent.integrations.fastapi
    pip install "tracengent[flask]"     # tracengent.integrations.flask

Both expose `install_tracengent(app, client)` and `require_agent_permission(permission)`; a
denied request is answered 403 with `{"error": "forbidden", "permission": ..., "reason": ...}`.
"""
