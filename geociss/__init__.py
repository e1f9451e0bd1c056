"""geociss: class-incremental semantic segmentation for aerial and satellite imagery.

Importing the package is cheap: no torch, rasterio or geopandas is imported until a submodule
that needs it is used.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
