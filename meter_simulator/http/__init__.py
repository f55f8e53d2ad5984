"""The control port: HTTP server, API routes, metrics and the dashboard (static/). Imports model,
maps, device, net and modbus (for its counters); nothing imports it but app."""
