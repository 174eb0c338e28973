"""Run directories: the files a training run writes (``layout``: config, weights, item map, metrics,
summary) and the resume state ``--resume`` reads (``resume``).

This package sits below training, evaluation reports and retrieval, all of which read run
directories; it imports only the configuration, the data package and the errors.
"""
