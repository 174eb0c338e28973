"""The HTTP candidate service (``bamrec serve``): FastAPI over ``bamrec.retrieval.service``."""
