"""Rendered kernel modules, per layer definition: <kind>_<name> (forward), decode_<kind>_<name> (decode)."""
