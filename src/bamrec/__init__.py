"""bamrec: multi-interest sequential recommendation with BaM.

BaM: J. Lee, J. Yun, U Kang, "Towards True Multi-interest Recommendation: Enhanced Scheme for
Balanced Interest Training", IEEE BigData 2024.
"""

__version__ = "0.1.0"
