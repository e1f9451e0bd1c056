"""Data: class schemas, GeoTIFF catalogues, scenarios, window sampling, sample scenes."""
