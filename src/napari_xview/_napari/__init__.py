"""The napari side of napari-xview: npe2 reader, writers, sample data and dock widgets.

This subpackage is the only place that imports napari, Qt, magicgui or qtpy; everything it
hands to the engine is a plain array, a :class:`~napari_xview.io.Volume` or a config.
Modules are imported by npe2 on demand (see ``napari.yaml``), so nothing is imported here.
"""
