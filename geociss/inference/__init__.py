"""Prediction over rasters of any size (``geociss predict``).

The engine, by stage:

* :mod:`~geociss.inference.grid`: the tile grid and the blending weights;
* :mod:`~geociss.inference.source`: input checks and tile reads (DataLoader workers);
* :mod:`~geociss.inference.predictor`: normalisation, TTA, batched forward, batch sizing;
* :mod:`~geociss.inference.stream`: the row-band accumulator that streams finished rows;
* :mod:`~geociss.inference.resume`: partial outputs, progress sidecar, resume and skip;
* :mod:`~geociss.inference.plan`: column groups and memory estimates;
* :mod:`~geociss.inference.model`: the model wrapper and the run settings;
* :mod:`~geociss.inference.inputs`: files, folders and globs into inputs, a result per input;
* :mod:`~geociss.inference.run`: many inputs, one result each;
  :mod:`~geociss.inference.distributed`: the same across processes (``--devices``);
  :mod:`~geociss.inference.launch`: the same across machines (torchrun, srun);
  :mod:`~geociss.inference.dryrun`: the plan without predicting.

The output side (COG, styles, polygons, ONNX) is :mod:`~geociss.inference.outputs`,
:mod:`~geociss.inference.qml`, :mod:`~geociss.inference.vectors` and
:mod:`~geociss.inference.onnx_export`.

Importing this package is cheap; the modules import torch and rasterio themselves.
"""
