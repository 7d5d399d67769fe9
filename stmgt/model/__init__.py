"""STMGT model (STMGT_SPEC.md §9): spatial GATv2 + temporal Transformer blocks fused by a
learned gate, weather cross-attention, and a Gaussian-mixture output head."""

from stmgt.model.config import STMGTConfig
from stmgt.model.stmgt import STMGT, Diagnostics

__all__ = ["STMGT", "STMGTConfig", "Diagnostics"]
