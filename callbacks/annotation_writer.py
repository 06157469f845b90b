"""The annotation predict job's writer, for configs (``class_path: latentnav.callbacks.annotation_writer.AnnotationWriter``).

It lives with the data layer (``latentnav/datamodules/annotation_writer.py``) because the
supervised datamodule runs the same job itself when its store is missing, and a datamodule may
not import a callback (the layer order in ``latentnav/__init__.py``).
"""

from latentnav.datamodules.annotation_writer import AnnotationWriter

__all__ = ["AnnotationWriter"]
