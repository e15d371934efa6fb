"""``reprise studio``: a local web page to make music with shipped models and your own runs.

``app`` is the FastAPI server and its JSON API, ``jobs`` runs generation in a worker
thread with progress and cancel, ``static/`` holds the page. Nothing is fetched from
a network; the server binds 127.0.0.1 unless told otherwise.
"""
