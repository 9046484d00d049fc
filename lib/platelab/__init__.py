"""platelab: a notebook workbench from traffic video to an exported vehicle and plate detector."""

__version__ = "0.1.0"

LABELS = ("vehicle", "license_plate")
"""Canonical class labels, in label-map order (class id = index + 1; 0 is background)."""
