"""growthflow: production-grade marketing data pipelines."""

__version__ = "0.1.0"
