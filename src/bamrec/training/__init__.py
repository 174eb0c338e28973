"""Training schemes: interest selection (hard, BaM_p, BaM_l), losses and the per-step objective."""

from bamrec.training.objective import Objective, ObjectiveOutput
from bamrec.training.selection import BaMSelector, Selection

__all__ = ["BaMSelector", "Selection", "Objective", "ObjectiveOutput"]
