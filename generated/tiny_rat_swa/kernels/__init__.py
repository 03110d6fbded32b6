"""Rendered kernel modules: <kind>_<name> (forward) and decode_<kind>_<name> (decode) of each
layer definition; rms_norm, the fused RMSNorm of every norm."""
