"""Retrieval: exact top-k items for multi-interest users (max over interests)."""

from bamrec.retrieval.recommend import recommend, topk_items

__all__ = ["recommend", "topk_items"]
