"""Data: readers, prepared datasets (CSR), leave-one-out split, vectorised batch sampling."""

from bamrec.data.sequences import SequenceDataset
from bamrec.data.split import LeaveOneOut

__all__ = ["SequenceDataset", "LeaveOneOut"]
