"""A local web page for one-shot search (``python -m siamese_mrcnn.app``).

uploads.py checks what comes in (images, boxes, limits); engine.py runs the model on
its own thread (uploaded queries, folder searches as jobs); server.py is the Starlette
app (the page and the JSON API); static/ holds the page, served from the package.
Needs the ``app`` extra: ``pip install -e .[app]``.
"""
