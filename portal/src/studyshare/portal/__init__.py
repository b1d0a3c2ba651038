"""The web portal: server-rendered pages (Jinja2 + htmx) over the public API of the gateway."""
