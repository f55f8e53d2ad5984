"""Pure physics: random processes, the meters and their solar panels, demand, the Reading and
the quantity vocabulary. Imports only the standard library (and checks): no clock, thread or socket."""
