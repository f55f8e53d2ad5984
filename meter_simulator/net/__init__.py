"""Listeners and connections for every TCP face: address resolution, allow list, the acceptor
thread, the bounded connections a server keeps and joins. Imports no other layer."""
