"""Compare: what differs between two manifests or runs (``envcap diff``), and which
clusters run which environments (``envcap fleet``)."""
