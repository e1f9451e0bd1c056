"""Deterministic generator of ISPRS-like aerial scenes (for the demo, tests and benchmarks).

Georeferenced image/label GeoTIFF pairs with the six ISPRS classes: streets with parked cars,
houses and apartment blocks with lit roofs and cast shadows, tree crowns over lawns, clutter.
Colours overlap between classes on purpose, so that a model has to learn shape and context.

Modules: :mod:`.noise` (texture fields), :mod:`.canvas` (rasterising shapes),
:mod:`.materials` and :mod:`.surfaces` (colours and ground textures), :mod:`.objects`
(buildings, trees, cars, clutter), :mod:`.roads` and :mod:`.blocks` (the town plan),
:mod:`.layout` (one scene), :mod:`.render` (shadows, lighting, sensor), :mod:`.writer`
(GeoTIFF), :mod:`.scenes` (the public entry points).
"""

from geociss.data.synthetic.scenes import SceneSet, generate_scenes, make_scene

__all__ = ["SceneSet", "generate_scenes", "make_scene"]
