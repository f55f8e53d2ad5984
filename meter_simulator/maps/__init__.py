"""Register maps as data: points and profiles, the map file loader and its schema, the built-in maps
(builtin/), the codec that encodes a tick and the Image a read is cut from. Imports model only; pure."""
